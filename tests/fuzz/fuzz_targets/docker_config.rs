//! The Docker config file (`~/.docker/config.json`): credentials for a
//! registry, or the helper to ask ([`credentials::lookup_docker_config`]).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipeline::credentials::{self, ConfigLookup};

const HOSTS: [&str; 3] = ["127.0.0.1:5000", "docker.io", "ghcr.io"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let host = HOSTS[usize::from(mode) % HOSTS.len()];
    match credentials::lookup_docker_config(text, Path::new("config.json"), host) {
        Ok(ConfigLookup::Helper(name)) => {
            assert!(
                !name.is_empty() && !name.contains('/'),
                "helper {name:?} is a path"
            );
        }
        Ok(ConfigLookup::Credentials(c)) => {
            // Debug output (which logs could carry) never shows the password.
            let pw = c.password.expose();
            if pw.len() >= 8
                && pw.chars().all(|ch| ch.is_ascii_alphanumeric())
                && !c.username.contains(pw)
                && !c.origin.contains(pw)
            {
                assert!(!format!("{c:?}").contains(pw), "Debug shows the password");
            }
        }
        Ok(ConfigLookup::Nothing) => {}
        Err(e) => {
            // Messages never quote what is in the file (secrets live there).
            let _ = e.to_string();
        }
    }
});
