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
    env.sandbox.flush_removals().await;
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

/// A submitted name reaches every tool as a path, never as an option or a
/// response file (`@file`): each case would have injected options before.
/// Names starting with `-` or `@` are refused by the submission validator;
/// these cases go around it, to prove the commands hold on their own.
mod names_are_never_options {
    use super::*;

    /// Text that, read by gcc as a response file, makes a shell print a
    /// marker; read as C, it is a syntax error quoting the marker unexpanded.
    const GCC_WRAPPER: &str = "-wrapper /bin/sh,-c,echo${IFS}m4rk$((6*7))\n";

    async fn gcc_like(language: &str, ext: &str, main: &str) {
        require_docker!();
        let env = Env::new().await;
        let at_name = format!("@opts{ext}");
        let opts = format!("opts{ext}");
        let r = env
            .run_unvalidated(
                language,
                &[
                    (&format!("main{ext}"), main),
                    (&at_name, "int helper(void) { return 1; }\n"),
                    (&opts, GCC_WRAPPER),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{language}: {e}"));
        let c = r.compile.as_ref().expect("a compile stage");
        assert!(
            !c.output().contains("m4rk42"),
            "{language} ran the injected wrapper: {}",
            show(&r)
        );
        // The options file was compiled as a source, and the @-name too.
        assert_eq!(r.status, Status::CompileError, "{}", show(&r));
        assert!(c.stderr.contains(&format!("./{opts}")), "{}", show(&r));
        // Without the options file, the @-named source compiles and runs.
        let r = env
            .run_unvalidated(
                language,
                &[
                    (&format!("main{ext}"), main),
                    (&at_name, "int helper(void) { return 1; }\n"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(r.status, Status::Ok, "{}", show(&r));
        assert_eq!(out(&r), "OK");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gcc_reads_an_at_name_as_a_source() {
        gcc_like(
            "c",
            ".c",
            "#include <stdio.h>\nint main(void){ puts(\"OK\"); return 0; }\n",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gxx_reads_an_at_name_as_a_source() {
        gcc_like(
            "c++",
            ".cpp",
            "#include <cstdio>\nint main(){ std::puts(\"OK\"); }\n",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rustc_reads_an_at_name_as_the_crate_root() {
        require_docker!();
        let env = Env::new().await;
        // Read as a response file, `main.rs` would make rustc print its
        // version and build nothing.
        let r = env
            .run_unvalidated(
                "rust",
                &[
                    ("@main.rs", "fn main() { println!(\"OK\"); }\n"),
                    ("main.rs", "--version\n"),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("rust: {e}"));
        assert_eq!(r.status, Status::Ok, "{}", show(&r));
        assert_eq!(out(&r), "OK");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn javac_reads_an_at_name_as_a_source() {
        require_docker!();
        let env = Env::new().await;
        let main = "public class Main { public static void main(String[] a) { System.out.println(\"OK\" + Helper.x()); } }\n";
        let helper = "class Helper { static int x() { return 1; } }\n";
        let r = env
            .run_unvalidated("java", &[("Main.java", main), ("@Helper.java", helper)])
            .await
            .unwrap_or_else(|e| panic!("java: {e}"));
        assert_eq!(r.status, Status::Ok, "{}", show(&r));
        assert_eq!(out(&r), "OK1");
        // With `Helper.java` holding options, javac would print its usage
        // and compile nothing; as a source it is a syntax error.
        let r = env
            .run_unvalidated(
                "java",
                &[
                    ("Main.java", main),
                    ("@Helper.java", helper),
                    ("Helper.java", "--help\n"),
                ],
            )
            .await
            .unwrap();
        let c = r.compile.as_ref().unwrap();
        assert!(!c.output().contains("Usage: javac"), "{}", show(&r));
        assert_eq!(r.status, Status::CompileError, "{}", show(&r));
    }

    /// The java launcher reads `@file` in the main class's position, and
    /// cannot be told not to (java 17): such an entry is refused up front.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn java_never_sees_an_at_main_class() {
        require_docker!();
        let env = Env::new().await;
        let err = env
            .sandbox
            .prepare(runner::sandbox::RunRequest {
                language: "java".into(),
                files: vec![
                    common::file(
                        "@Main.java",
                        "class Main { public static void main(String[] a) {} }",
                    ),
                    common::file("Main", "-version"),
                ],
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("starts with '@'"), "{err}");
    }

    /// The go tool has no response files and refuses, itself, source names
    /// starting with `-` or `@`: such a name is a compile error, never a flag.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn go_refuses_option_like_source_names_itself() {
        require_docker!();
        let env = Env::new().await;
        let main = "package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"OK\") }\n";
        for name in ["@helper.go", "-toolexec.go"] {
            let r = env
                .run_unvalidated("go", &[("main.go", main), (name, "package main\n")])
                .await
                .unwrap_or_else(|e| panic!("go: {e}"));
            assert_eq!(r.status, Status::CompileError, "{}", show(&r));
            let c = r.compile.as_ref().unwrap();
            assert!(c.stderr.contains("invalid input file name"), "{}", show(&r));
        }
    }

    /// Interpreters: an entry named like one of their options is the script.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interpreters_run_an_option_named_entry_as_the_script() {
        require_docker!();
        let env = Env::new().await;
        let cases = [
            ("python", "-c", "print('OK')"),
            ("ruby", "-e", "puts 'OK'"),
            ("bash", "-c", "echo OK"),
            ("bash", "+x", "echo OK"),
            ("javascript", "-p", "console.log('OK')"),
            // `node inspect` would start the debugger.
            ("javascript", "inspect", "console.log('OK')"),
        ];
        for (language, name, prog) in cases {
            let r = env
                .run_unvalidated(language, &[(name, prog)])
                .await
                .unwrap_or_else(|e| panic!("{language} {name}: {e}"));
            assert_eq!(r.status, Status::Ok, "{language} {name}: {}", show(&r));
            assert_eq!(out(&r), "OK", "{language} {name}: {}", show(&r));
        }
    }
}
