//! From the final file system to a sorted list of packages.

use std::collections::BTreeMap;

use super::{Ecosystem, Found, OsRelease, Record};
use crate::sbom::purl;
use crate::sbom::rootfs::RootFs;
use crate::sbom::warning::{Warning, Warnings};

/// Where a package's metadata was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Path inside the image, without the leading `/`.
    pub path: String,
    /// The layer (its diff id, `sha256:...`) that holds the file, for images.
    pub layer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    pub purl: String,
    pub licenses: Vec<String>,
    /// Sorted; more than one when the same package is installed twice.
    pub locations: Vec<Location>,
}

/// Everything found in one file system.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub distro: Option<(OsRelease, Location)>,
    pub packages: Vec<Package>,
    pub warnings: Vec<Warning>,
    /// Paths in the final file system.
    pub files: usize,
}

/// Collects the packages of `fs`; `layers[i]` names layer `i`.
pub fn assemble(mut fs: RootFs, layers: &[String]) -> Inventory {
    let mut warnings: Warnings = std::mem::take(&mut fs.warnings);
    let location = |path: &str, layer: u32| Location {
        path: path.to_owned(),
        layer: usize::try_from(layer)
            .ok()
            .and_then(|i| layers.get(i))
            .cloned(),
    };
    let mut distro = None;
    for candidate in ["etc/os-release", "usr/lib/os-release"] {
        if let Some((real, node)) = fs.lookup(candidate, &mut warnings)
            && let Some(Found::OsRelease(os)) = node.captured.as_deref().map(|c| &c.found)
        {
            distro = Some((os.clone(), location(&real, node.layer)));
            break;
        }
    }
    let os = distro.as_ref().map(|(os, _)| os);
    let mut by_purl: BTreeMap<String, Package> = BTreeMap::new();
    for (path, node) in fs.iter() {
        let Some(captured) = node.captured.as_deref() else {
            continue;
        };
        warnings.extend(path, &captured.warnings);
        let Found::Packages(records) = &captured.found else {
            continue;
        };
        for rec in records {
            let mut licenses = rec.licenses.clone();
            if rec.ecosystem == Ecosystem::Deb {
                licenses.extend(copyright_licenses(&fs, rec, &mut warnings));
            }
            let purl = match purl::for_record(rec, os) {
                Ok(p) => p,
                Err(e) => {
                    warnings.push(Some(path), format!("{e}; package left out"));
                    continue;
                }
            };
            let pkg = by_purl.entry(purl.clone()).or_insert_with(|| Package {
                ecosystem: rec.ecosystem,
                name: rec.name.clone(),
                version: rec.version.clone(),
                purl,
                licenses: Vec::new(),
                locations: Vec::new(),
            });
            pkg.licenses.extend(licenses);
            pkg.locations.push(location(path, node.layer));
        }
    }
    let mut packages: Vec<Package> = by_purl.into_values().collect();
    for p in &mut packages {
        p.licenses.sort();
        p.licenses.dedup();
        p.locations.sort();
        p.locations.dedup();
    }
    packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.purl).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.purl,
        ))
    });
    Inventory {
        distro,
        packages,
        warnings: warnings.into_sorted(),
        files: fs.len(),
    }
}

/// Licences of a Debian package's copyright file; `usr/share/doc/NAME` is
/// often a symlink to another package's directory.
fn copyright_licenses(fs: &RootFs, rec: &Record, warnings: &mut Warnings) -> Vec<String> {
    let path = format!("usr/share/doc/{}/copyright", rec.name);
    match fs.lookup(&path, warnings) {
        Some((_, node)) => match node.captured.as_deref().map(|c| &c.found) {
            Some(Found::Licenses(l)) => l.clone(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::rootfs::LayerBuilder;

    #[test]
    fn packages_with_distro_licences_and_locations() {
        let status = "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\n\n\
                      Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n";
        let copyright = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-3+\n";
        let l0 = LayerBuilder::new()
            .file("usr/lib/os-release", b"ID=debian\nVERSION_ID=\"12\"\n")
            .symlink("etc/os-release", "../usr/lib/os-release")
            .file("var/lib/dpkg/status", status.as_bytes())
            .file("usr/share/doc/bash/copyright", copyright.as_bytes())
            .symlink("usr/share/doc/libc6", "bash")
            .file(
                "usr/lib/python3/dist-packages/six-1.16.0.egg-info",
                b"Name: six\nVersion: 1.16.0\nLicense: MIT\n",
            )
            .build();
        let l1 = LayerBuilder::new()
            .file(
                "usr/local/lib/python3.11/dist-packages/six-1.16.0.dist-info/METADATA",
                b"Name: six\nVersion: 1.16.0\n",
            )
            .file(
                "app/node_modules/@s/p/package.json",
                br#"{"name":"@s/p","version":"1.0.0"}"#,
            )
            .file("app/node_modules/broken/package.json", b"{")
            .build();
        let mut fs = RootFs::new();
        fs.apply_tar(&l0[..], 0, "l0", true);
        fs.apply_tar(&l1[..], 1, "l1", true);
        let inv = assemble(fs, &["sha256:l0".into(), "sha256:l1".into()]);
        let (os, loc) = inv.distro.unwrap();
        assert_eq!(os.distro_qualifier().as_deref(), Some("debian-12"));
        assert_eq!(loc.path, "usr/lib/os-release");
        let purls: Vec<&str> = inv.packages.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12",
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc",
                "pkg:pypi/six@1.16.0",
                "pkg:npm/%40s/p@1.0.0",
            ]
        );
        assert_eq!(inv.packages[0].licenses, ["GPL-3+"]);
        assert_eq!(inv.packages[1].licenses, ["GPL-3+"], "through the symlink");
        let six = &inv.packages[2];
        assert_eq!(six.locations.len(), 2, "both installs are listed");
        assert_eq!(six.licenses, ["MIT"]);
        assert_eq!(six.locations[1].layer.as_deref(), Some("sha256:l1"));
        assert_eq!(inv.warnings.len(), 1, "{:?}", inv.warnings);
        assert!(inv.warnings[0].path.as_deref().unwrap().contains("broken"));
    }
}
