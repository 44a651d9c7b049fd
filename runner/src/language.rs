//! Languages: the manifests of `sandbox-images/<language>/manifest.toml`,
//! checked once, and the commands they turn into for a submission.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::images::sources::ImageSources;
use crate::submission::SubmissionFile;

/// Repository of the sandbox images in the local engine.
pub const IMAGE_REPOSITORY: &str = "runner-sandbox";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    /// The language's name in requests (Piston's `language`).
    name: String,
    /// Version of the toolchain in the image.
    version: String,
    #[serde(default)]
    aliases: Vec<String>,
    /// A program in the image directory that prints `OK`: the smoke test.
    test_file: String,
    /// Prints the toolchain's version (checked against `version` by tests).
    version_command: Vec<String>,
    /// Extensions `{sources}` selects among the submitted files.
    #[serde(default)]
    source_extensions: Vec<String>,
    compile: Option<StageFile>,
    run: StageFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{origin}/{dir}/manifest.toml: {problem}")]
    Invalid {
        origin: String,
        dir: String,
        problem: Box<ManifestProblem>,
    },
    #[error("{origin}: language name or alias {name:?} is used by both {first} and {second}")]
    Clash {
        origin: String,
        name: String,
        first: String,
        second: String,
    },
}

/// What is wrong inside one language's manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("name {name:?} must be lowercase, without spaces")]
    Name { name: String },
    #[error("alias {alias:?} must be lowercase, without spaces")]
    Alias { alias: String },
    #[error("version is empty")]
    NoVersion,
    #[error("test_file {test_file:?} is not in {dir}/")]
    NoTestFile { test_file: String, dir: String },
    #[error("{dir}/Dockerfile is missing")]
    NoDockerfile { dir: String },
    #[error("version_command is empty")]
    NoVersionCommand,
    /// `stage` is `compile` or `run`.
    #[error("[{stage}] {problem}")]
    Command {
        stage: &'static str,
        problem: TemplateProblem,
    },
}

/// Why a stage's command template is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateProblem {
    #[error("command is empty")]
    Empty,
    #[error(
        "{element:?}: pass the entry file as \"./{{entry}}\", or as \"{{entry}}\" after a \"--\" element, so its name is never read as an option"
    )]
    EntryAsOption { element: String },
    #[error("unclosed placeholder in {element:?}")]
    Unclosed { element: String },
    #[error("unknown placeholder {placeholder} in {element:?}; known: {}", PLACEHOLDERS.join(", "))]
    Unknown {
        placeholder: String,
        element: String,
    },
    #[error("{placeholder} must be a whole argument, not part of {element:?}")]
    NotWhole {
        placeholder: String,
        element: String,
    },
    #[error("{{args}} belongs in the run command only")]
    ArgsOutsideRun,
    #[error("{{sources}} needs source_extensions")]
    SourcesWithoutExtensions,
}

/// A command template: placeholders are filled per submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// One language, ready to use.
#[derive(Debug, Clone, Serialize)]
pub struct Language {
    pub name: String,
    pub version: String,
    pub aliases: Vec<String>,
    /// Directory under `sandbox-images/`, also the image name.
    pub dir: String,
    /// The image reference this build of the runner uses.
    pub image: String,
    pub test_file: String,
    pub version_command: Vec<String>,
    pub source_extensions: Vec<String>,
    pub compile: Option<Stage>,
    pub run: Stage,
}

/// Placeholders a command may hold. `{sources}` and `{args}` expand to any
/// number of arguments, so they must stand alone in their element.
///
/// A submitted name must reach a tool as a path, never as an option or a
/// response file (`@file`, read by gcc, javac, java and rustc): `{sources}`
/// expands to `./name` each, and `{entry}` must be written `./{entry}`, or
/// stand alone after a `--` element for tools that print the name as given
/// (python, ruby, bash). `{entry_stem}` (java's main class) cannot be a path:
/// the submission validator's refusal of names starting with `-` or `@` is
/// what keeps it a class name.
const PLACEHOLDERS: [&str; 4] = ["{entry}", "{entry_stem}", "{sources}", "{args}"];

fn check_template(cmd: &[String], is_run: bool, has_ext: bool) -> Result<(), TemplateProblem> {
    if cmd.is_empty() {
        return Err(TemplateProblem::Empty);
    }
    for (i, el) in cmd.iter().enumerate() {
        if el.contains("{entry}")
            && el != "./{entry}"
            && !(el == "{entry}" && i > 0 && cmd[..i].iter().any(|e| e == "--"))
        {
            return Err(TemplateProblem::EntryAsOption {
                element: el.clone(),
            });
        }
        let mut rest = el.as_str();
        while let Some(start) = rest.find('{') {
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| TemplateProblem::Unclosed {
                    element: el.clone(),
                })?;
            let ph = &rest[start..start + end + 1];
            if !PLACEHOLDERS.contains(&ph) {
                return Err(TemplateProblem::Unknown {
                    placeholder: ph.to_owned(),
                    element: el.clone(),
                });
            }
            if (ph == "{sources}" || ph == "{args}") && el != ph {
                return Err(TemplateProblem::NotWhole {
                    placeholder: ph.to_owned(),
                    element: el.clone(),
                });
            }
            if ph == "{args}" && !is_run {
                return Err(TemplateProblem::ArgsOutsideRun);
            }
            if ph == "{sources}" && !has_ext {
                return Err(TemplateProblem::SourcesWithoutExtensions);
            }
            rest = &rest[start + end + 1..];
        }
    }
    Ok(())
}

impl Language {
    fn from_manifest(
        dir: &str,
        text: &str,
        sources: &ImageSources,
    ) -> Result<Language, ManifestProblem> {
        let m: ManifestFile = toml::from_str(text)?;
        if m.name.is_empty()
            || m.name
                .chars()
                .any(|c| c.is_whitespace() || c.is_uppercase())
        {
            return Err(ManifestProblem::Name { name: m.name });
        }
        if let Some(a) = m
            .aliases
            .iter()
            .find(|a| a.is_empty() || a.chars().any(|c| c.is_whitespace() || c.is_uppercase()))
        {
            return Err(ManifestProblem::Alias { alias: a.clone() });
        }
        if m.version.is_empty() {
            return Err(ManifestProblem::NoVersion);
        }
        if sources.file(&format!("{dir}/{}", m.test_file)).is_none() {
            return Err(ManifestProblem::NoTestFile {
                test_file: m.test_file,
                dir: dir.to_owned(),
            });
        }
        if sources.file(&format!("{dir}/Dockerfile")).is_none() {
            return Err(ManifestProblem::NoDockerfile {
                dir: dir.to_owned(),
            });
        }
        if m.version_command.is_empty() {
            return Err(ManifestProblem::NoVersionCommand);
        }
        let has_ext = !m.source_extensions.is_empty();
        if let Some(c) = &m.compile {
            check_template(&c.command, false, has_ext).map_err(|problem| {
                ManifestProblem::Command {
                    stage: "compile",
                    problem,
                }
            })?;
        }
        check_template(&m.run.command, true, has_ext).map_err(|problem| {
            ManifestProblem::Command {
                stage: "run",
                problem,
            }
        })?;
        let tag = format!("{}-{}", m.version, sources.content_hash(&["base", dir]));
        let stage = |s: StageFile| Stage {
            command: s.command,
            env: s.env,
        };
        Ok(Language {
            image: format!("{IMAGE_REPOSITORY}/{dir}:{tag}"),
            dir: dir.to_owned(),
            name: m.name,
            version: m.version,
            aliases: m.aliases,
            test_file: m.test_file,
            version_command: m.version_command,
            source_extensions: m.source_extensions,
            compile: m.compile.map(stage),
            run: stage(m.run),
        })
    }

    /// The command of a stage with its placeholders filled.
    pub fn command(&self, stage: &Stage, files: &[SubmissionFile], args: &[String]) -> Vec<String> {
        let entry = files.first().map(|f| f.name.as_str()).unwrap_or_default();
        let stem = entry.rsplit_once('.').map_or(entry, |(s, _)| s);
        let mut out = Vec::new();
        for el in &stage.command {
            match el.as_str() {
                "{args}" => out.extend(args.iter().cloned()),
                "{sources}" => out.extend(
                    files
                        .iter()
                        .filter(|f| {
                            self.source_extensions
                                .iter()
                                .any(|e| f.name.ends_with(e.as_str()))
                        })
                        .map(|f| format!("./{}", f.name)),
                ),
                _ => out.push(el.replace("{entry_stem}", stem).replace("{entry}", entry)),
            }
        }
        out
    }

    /// Whether `selector` (Piston-style: `*`, an exact version, a prefix such
    /// as `3` or `3.11`, optionally ending in `.x` or `.*`) picks this version.
    pub fn version_matches(&self, selector: &str) -> bool {
        let sel = selector.trim();
        let sel = sel
            .strip_suffix(".x")
            .or_else(|| sel.strip_suffix(".*"))
            .unwrap_or(sel);
        if sel.is_empty() || sel == "*" || sel == "x" || sel == "latest" {
            return true;
        }
        self.version == sel
            || self
                .version
                .strip_prefix(sel)
                .is_some_and(|rest| rest.starts_with('.'))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("unknown language {name:?}; available: {available}")]
    Unknown { name: String, available: String },
    #[error("{language} {version_wanted} is not available; this runner has {language} {version}")]
    Version {
        language: String,
        version_wanted: String,
        version: String,
    },
}

/// All languages, looked up by name or alias.
#[derive(Debug, Clone)]
pub struct Catalog {
    languages: Vec<Arc<Language>>,
    by_name: BTreeMap<String, usize>,
}

impl Catalog {
    pub fn load(sources: &ImageSources) -> Result<Catalog, ManifestError> {
        let mut languages: Vec<Arc<Language>> = Vec::new();
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        for dir in sources.language_dirs() {
            let text = sources
                .file(&format!("{dir}/manifest.toml"))
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let lang = Language::from_manifest(dir, &text, sources).map_err(|problem| {
                ManifestError::Invalid {
                    origin: sources.origin().to_owned(),
                    dir: dir.to_owned(),
                    problem: Box::new(problem),
                }
            })?;
            let idx = languages.len();
            for n in std::iter::once(&lang.name).chain(&lang.aliases) {
                if let Some(&other) = by_name.get(n) {
                    let first = &languages[other];
                    return Err(ManifestError::Clash {
                        origin: sources.origin().to_owned(),
                        name: n.clone(),
                        first: first.dir.clone(),
                        second: dir.to_owned(),
                    });
                }
                by_name.insert(n.clone(), idx);
            }
            languages.push(Arc::new(lang));
        }
        Ok(Catalog { languages, by_name })
    }

    pub fn languages(&self) -> &[Arc<Language>] {
        &self.languages
    }

    /// Finds a language by name or alias (case-insensitive) and checks the
    /// version selector, if any.
    pub fn find(&self, name: &str, version: Option<&str>) -> Result<Arc<Language>, LookupError> {
        let idx = self
            .by_name
            .get(&name.trim().to_lowercase())
            .ok_or_else(|| LookupError::Unknown {
                name: name.to_owned(),
                available: self
                    .languages
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let lang = &self.languages[*idx];
        if let Some(v) = version
            && !lang.version_matches(v)
        {
            return Err(LookupError::Version {
                language: lang.name.clone(),
                version_wanted: v.to_owned(),
                version: lang.version.clone(),
            });
        }
        Ok(Arc::clone(lang))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::load(&ImageSources::embedded()).unwrap()
    }

    fn files(names: &[&str]) -> Vec<SubmissionFile> {
        names
            .iter()
            .map(|n| SubmissionFile {
                name: (*n).into(),
                content: vec![],
            })
            .collect()
    }

    #[test]
    fn every_embedded_manifest_loads() {
        let c = catalog();
        assert!(c.languages().len() >= 6);
        for l in c.languages() {
            assert!(l.image.starts_with("runner-sandbox/"), "{}", l.image);
        }
    }

    #[test]
    fn lookup_by_alias_and_version() {
        let c = catalog();
        assert_eq!(c.find("py", None).unwrap().name, "python");
        assert_eq!(c.find("Python3", Some("3")).unwrap().name, "python");
        assert_eq!(c.find("python", Some("3.11.x")).unwrap().name, "python");
        assert_eq!(c.find("python", Some("*")).unwrap().name, "python");
        assert!(matches!(
            c.find("python", Some("2")),
            Err(LookupError::Version { .. })
        ));
        assert!(matches!(
            c.find("python", Some("3.1")),
            Err(LookupError::Version { .. })
        ));
        let err = c.find("cobol", None).unwrap_err();
        assert!(err.to_string().contains("available: "), "{err}");
    }

    #[test]
    fn commands_fill_placeholders() {
        let c = catalog();
        let java = c.find("java", None).unwrap();
        let fs = files(&["Main.java", "Util.java", "notes.txt"]);
        let compile = java.command(java.compile.as_ref().unwrap(), &fs, &[]);
        assert!(compile.ends_with(&["./Main.java".to_string(), "./Util.java".to_string()]));
        let run = java.command(&java.run, &fs, &["a b".into(), "c".into()]);
        assert_eq!(&run[run.len() - 3..], ["Main", "a b", "c"]);
        let py = c.find("python", None).unwrap();
        assert_eq!(
            py.command(&py.run, &files(&["main.py"]), &[]),
            ["python3", "--", "main.py"]
        );
    }

    /// Every command of every language passes a submitted name as a path
    /// (`./name`) or after `--`: with names that would be options or
    /// response files if they were bare, nothing bare is left.
    #[test]
    fn submitted_names_reach_every_tool_as_paths() {
        for lang in catalog().languages() {
            let ext = lang
                .source_extensions
                .first()
                .map_or(".txt", String::as_str);
            let names = [
                format!("@entry{ext}"),
                format!("-x{ext}"),
                format!("+x{ext}"),
            ];
            let fs = files(&names.iter().map(String::as_str).collect::<Vec<_>>());
            let stages = lang.compile.iter().chain(std::iter::once(&lang.run));
            for stage in stages {
                let argv = lang.command(stage, &fs, &[]);
                let dashdash = argv.iter().position(|a| a == "--");
                for (i, a) in argv.iter().enumerate() {
                    let bare = names.iter().any(|n| a == n);
                    assert!(
                        !bare || dashdash.is_some_and(|d| d < i),
                        "{}: {a:?} reaches {argv:?} bare",
                        lang.name
                    );
                }
            }
        }
    }

    #[test]
    fn templates_are_checked() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_template(&s(&["x", "./{entry}"]), true, false).is_ok());
        assert!(check_template(&s(&["x", "--", "{entry}"]), true, false).is_ok());
        assert!(check_template(&s(&["x", "{entry}"]), true, false).is_err());
        assert!(check_template(&s(&["x", "-f{entry}"]), true, false).is_err());
        assert!(check_template(&s(&["x", "{nope}"]), true, false).is_err());
        assert!(check_template(&s(&["x", "-f{args}"]), true, false).is_err());
        assert!(check_template(&s(&["x", "{args}"]), false, false).is_err());
        assert!(check_template(&s(&["x", "{sources}"]), false, false).is_err());
        assert!(check_template(&s(&["x", "{sources}"]), false, true).is_ok());
        assert!(check_template(&s(&[]), true, false).is_err());
    }
}
