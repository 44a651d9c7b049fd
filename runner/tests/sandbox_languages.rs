//! Every language's test program prints OK in its real sandbox image, and
//! every image holds the toolchain version its manifest claims.

mod common;

use common::{Env, out, show};
use runner::verdict::Status;
use test_support::require_docker;

async fn check(language: &str) {
    let env = Env::new().await;
    let lang = env.sandbox.catalog().find(language, None).unwrap();
    let test = env
        .sources
        .file(&format!("{}/{}", lang.dir, lang.test_file))
        .unwrap();
    let r = env
        .run(
            language,
            &[(&lang.test_file, std::str::from_utf8(test).unwrap())],
        )
        .await;
    assert_eq!(r.status, Status::Ok, "{}", show(&r));
    assert_eq!(out(&r), "OK", "{}", show(&r));
    assert_eq!(r.compile.is_some(), lang.compile.is_some());

    let probe = env
        .sandbox
        .run_command(&lang, &lang.version_command)
        .await
        .unwrap();
    let said = format!("{}{}", probe.stdout, probe.stderr);
    assert!(
        said.contains(&lang.version),
        "{language}: manifest says {}, the image says {said:?}",
        lang.version
    );
}

macro_rules! languages {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                require_docker!();
                check($name).await;
            }
        )*

        #[test]
        fn every_language_has_a_test_here() {
            let listed = [$($name),*];
            let catalog = runner::language::Catalog::load(&runner::images::sources::ImageSources::embedded()).unwrap();
            for l in catalog.languages() {
                assert!(listed.contains(&l.name.as_str()), "add {} to sandbox_languages.rs", l.name);
            }
        }
    };
}

languages! {
    python_prints_ok => "python",
    javascript_prints_ok => "javascript",
    c_prints_ok => "c",
    cpp_prints_ok => "c++",
    java_prints_ok => "java",
    bash_prints_ok => "bash",
    go_prints_ok => "go",
    rust_prints_ok => "rust",
    ruby_prints_ok => "ruby",
}
