//! Licences as metadata states them, turned into CycloneDX licence choices:
//! an SPDX id when the text is one (or a Debian short name that maps to
//! one), an SPDX expression when it is a compound one, else a named licence.

use cyclonedx_bom::external_models::spdx::{SpdxExpression, SpdxIdentifier};
use cyclonedx_bom::models::license::{License, LicenseChoice, Licenses};

/// Debian copyright-format short names with one SPDX equivalent.
const DEBIAN_SPDX: &[(&str, &str)] = &[
    ("GPL-1", "GPL-1.0-only"),
    ("GPL-1+", "GPL-1.0-or-later"),
    ("GPL-2", "GPL-2.0-only"),
    ("GPL-2+", "GPL-2.0-or-later"),
    ("GPL-3", "GPL-3.0-only"),
    ("GPL-3+", "GPL-3.0-or-later"),
    ("LGPL-2", "LGPL-2.0-only"),
    ("LGPL-2+", "LGPL-2.0-or-later"),
    ("LGPL-2.1", "LGPL-2.1-only"),
    ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-3", "LGPL-3.0-only"),
    ("LGPL-3+", "LGPL-3.0-or-later"),
    ("AGPL-3", "AGPL-3.0-only"),
    ("AGPL-3+", "AGPL-3.0-or-later"),
    ("GFDL-1.2", "GFDL-1.2-only"),
    ("GFDL-1.2+", "GFDL-1.2-or-later"),
    ("GFDL-1.3", "GFDL-1.3-only"),
    ("GFDL-1.3+", "GFDL-1.3-or-later"),
    ("Expat", "MIT"),
    ("BSD-2-clause", "BSD-2-Clause"),
    ("BSD-3-clause", "BSD-3-Clause"),
    ("BSD-4-clause", "BSD-4-Clause"),
    ("Apache-2", "Apache-2.0"),
    ("MPL-1.1", "MPL-1.1"),
    ("MPL-2", "MPL-2.0"),
    ("Artistic", "Artistic-1.0-Perl"),
    ("Artistic-2", "Artistic-2.0"),
    ("zlib", "Zlib"),
    ("PSF-2", "PSF-2.0"),
];

/// The SPDX id `name` stands for, if any.
pub fn spdx_id(name: &str) -> Option<String> {
    if SpdxIdentifier::try_from(name.to_owned()).is_ok() {
        return Some(name.to_owned());
    }
    DEBIAN_SPDX
        .iter()
        .find(|(deb, _)| *deb == name)
        .map(|(_, id)| (*id).to_owned())
}

fn is_compound_expression(text: &str) -> bool {
    let compound = [" OR ", " AND ", " WITH "]
        .iter()
        .any(|op| text.contains(op));
    compound && SpdxExpression::try_from(text.to_owned()).is_ok()
}

/// CycloneDX 1.5 allows either licence objects or a single expression.
pub fn to_cyclonedx(licenses: &[String]) -> Option<Licenses> {
    if licenses.is_empty() {
        return None;
    }
    if let [only] = licenses
        && is_compound_expression(only)
    {
        return Some(Licenses(vec![LicenseChoice::Expression(
            SpdxExpression::new(only),
        )]));
    }
    let mut choices: Vec<LicenseChoice> = Vec::new();
    for l in licenses {
        let choice = match spdx_id(l) {
            Some(id) => LicenseChoice::License(License::license_id(&id)),
            None => LicenseChoice::License(License::named_license(l)),
        };
        if !choices.contains(&choice) {
            choices.push(choice);
        }
    }
    Some(Licenses(choices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cyclonedx_bom::models::license::LicenseIdentifier;

    fn describe(l: &Licenses) -> Vec<String> {
        l.0.iter()
            .map(|c| match c {
                LicenseChoice::Expression(e) => format!("expr:{e}"),
                LicenseChoice::License(l) => match &l.license_identifier {
                    LicenseIdentifier::SpdxId(id) => format!("id:{id}"),
                    LicenseIdentifier::Name(n) => format!("name:{n}"),
                },
            })
            .collect()
    }

    #[test]
    fn ids_debian_names_expressions_and_names() {
        let l = |v: &[&str]| {
            let v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
            describe(&to_cyclonedx(&v).unwrap())
        };
        assert_eq!(l(&["MIT"]), ["id:MIT"]);
        assert_eq!(l(&["GPL-2+", "Expat"]), ["id:GPL-2.0-or-later", "id:MIT"]);
        assert_eq!(l(&["MIT OR Apache-2.0"]), ["expr:MIT OR Apache-2.0"]);
        assert_eq!(
            l(&["MIT OR Apache-2.0", "ISC"]),
            ["name:MIT OR Apache-2.0", "id:ISC"]
        );
        assert_eq!(l(&["public-domain"]), ["name:public-domain"]);
        assert_eq!(l(&["BSD License"]), ["name:BSD License"]);
        assert!(to_cyclonedx(&[]).is_none());
    }
}
