//! npm packages: `node_modules/NAME/package.json` and
//! `node_modules/@SCOPE/NAME/package.json`, at any depth of nesting.

use serde_json::Value;

use super::{Ecosystem, Record};

/// Whether `dir` is a package directory right inside a `node_modules`
/// directory (so `node_modules/x/lib/package.json` is not a package).
pub fn is_package_dir(dir: &str) -> bool {
    let parts: Vec<&str> = dir.split('/').collect();
    match parts.as_slice() {
        [.., "node_modules", name] => !name.starts_with('@') && !name.starts_with('.'),
        [.., "node_modules", scope, _] => scope.starts_with('@'),
        _ => false,
    }
}

/// The package a `package.json` describes. Names must match the directory
/// the file is in, as npm itself requires of installed packages; a file that
/// does not is reported (it is not what `require` loads under that name).
pub fn parse_package_json(path: &str, text: &str, warnings: &mut Vec<String>) -> Option<Record> {
    let json: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!("not valid JSON ({e}); ignored"));
            return None;
        }
    };
    let name = json.get("name").and_then(Value::as_str).unwrap_or("");
    let version = json.get("version").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() || version.is_empty() {
        warnings.push("no name or no version; not a package".into());
        return None;
    }
    if name.contains(char::is_whitespace) || version.contains(char::is_whitespace) {
        warnings.push(format!(
            "name {name:?} or version {version:?} contains spaces; ignored"
        ));
        return None;
    }
    let dir = path.strip_suffix("/package.json").unwrap_or(path);
    if !dir.ends_with(&format!("node_modules/{name}")) {
        warnings.push(format!(
            "package.json names {name:?}, which is not the directory it is installed in"
        ));
    }
    let mut rec = Record::new(Ecosystem::Npm, name, version);
    match json.get("license") {
        Some(Value::String(s)) if !s.is_empty() => rec.licenses.push(s.clone()),
        Some(Value::Object(o)) => {
            if let Some(t) = o.get("type").and_then(Value::as_str) {
                rec.licenses.push(t.to_owned());
            }
        }
        _ => {}
    }
    // The deprecated `licenses: [{type}]` form.
    if let Some(list) = json.get("licenses").and_then(Value::as_array) {
        for l in list {
            match l {
                Value::String(s) => rec.licenses.push(s.clone()),
                Value::Object(o) => {
                    if let Some(t) = o.get("type").and_then(Value::as_str) {
                        rec.licenses.push(t.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    rec.licenses.sort();
    rec.licenses.dedup();
    Some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str, text: &str) -> (Option<Record>, Vec<String>) {
        let mut w = Vec::new();
        (parse_package_json(path, text, &mut w), w)
    }

    #[test]
    fn package_directories() {
        assert!(is_package_dir("node_modules/a"));
        assert!(is_package_dir("x/node_modules/@s/a"));
        assert!(is_package_dir("x/node_modules/a/node_modules/b"));
        assert!(!is_package_dir("x/node_modules/@s"));
        assert!(!is_package_dir("x/node_modules/.bin"));
        assert!(!is_package_dir("x/node_modules/a/dist"));
        assert!(!is_package_dir("usr/share/nodejs/a"));
    }

    #[test]
    fn scoped_packages_and_licence_forms() {
        let (r, w) = parse(
            "app/node_modules/@actions/core/package.json",
            r#"{"name":"@actions/core","version":"1.6.0","license":"MIT","dependencies":{}}"#,
        );
        let r = r.unwrap();
        assert!(w.is_empty());
        assert_eq!(r.name, "@actions/core");
        assert_eq!(r.licenses, ["MIT"]);
        let (r, _) = parse(
            "node_modules/old/package.json",
            r#"{"name":"old","version":"0.1.0","licenses":[{"type":"BSD"},{"type":"MIT"}]}"#,
        );
        assert_eq!(r.unwrap().licenses, ["BSD", "MIT"]);
        let (r, _) = parse(
            "node_modules/o/package.json",
            r#"{"name":"o","version":"1.0.0","license":{"type":"ISC","url":"x"}}"#,
        );
        assert_eq!(r.unwrap().licenses, ["ISC"]);
    }

    #[test]
    fn broken_files_are_warnings() {
        let (r, w) = parse("node_modules/a/package.json", "{\"name\": \"a\", \"vers");
        assert!(r.is_none());
        assert!(w[0].contains("JSON"));
        let (r, w) = parse("node_modules/a/package.json", r#"{"name":"a"}"#);
        assert!(r.is_none());
        assert_eq!(w.len(), 1);
        let (r, w) = parse(
            "node_modules/a/package.json",
            r#"{"name":"b","version":"1.0.0"}"#,
        );
        assert!(r.is_some(), "kept, with a warning");
        assert!(w[0].contains("not the directory"));
    }
}
