//! A real OpenID provider for tests: `oidc-provider-mock` from PyPI (in
//! the virtual environment `.ci/setup` makes), started on a free loopback
//! port, with clients registered through its registration endpoint.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The virtual environment with the provider and Selenium.
pub fn tools() -> PathBuf {
    std::env::var_os("RUNNER_WEB_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/web-tools"))
        })
}

/// Whether the web test tools are installed; under `CI=true` their absence
/// fails the test.
pub fn tools_or_skip(test: &str) -> bool {
    let bin = tools().join("bin/oidc-provider-mock");
    if bin.exists() {
        return true;
    }
    if test_support::in_ci() {
        panic!("{test}: {} is missing; run .ci/setup", bin.display());
    }
    eprintln!(
        "SKIPPED {test}: {} is missing (run .ci/setup); set CI=true to make this a failure",
        bin.display()
    );
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Debug)]
pub struct Provider {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:<port>`: the issuer, as discovery through this
    /// address names it.
    pub issuer: String,
}

/// People the provider knows: subject and the values of their `roles`.
pub const PEOPLE: [(&str, &str); 5] = [
    ("lena", "learners"),
    ("dev", "devs"),
    ("rita", "release"),
    ("rob", "release"),
    ("ada", "admins"),
];

impl Provider {
    pub fn start(port: u16) -> Provider {
        let mut cmd = Command::new(tools().join("bin/oidc-provider-mock"));
        cmd.args([
            "--port",
            &port.to_string(),
            "--require-registration",
            "true",
            "--require-nonce",
            "true",
        ]);
        for (sub, role) in PEOPLE {
            cmd.arg("--user-claims").arg(serde_json::json!({"sub": sub, "name": format!("{sub} <b>bold</b>"), "roles": [role]}).to_string());
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting oidc-provider-mock");
        let issuer = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let agent = agent();
        loop {
            let up = agent
                .get(&format!("{issuer}/.well-known/openid-configuration"))
                .call()
                .is_ok_and(|r| r.status() == 200);
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider-mock did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Provider {
            child,
            port,
            issuer,
        }
    }

    /// Registers a client; returns (client_id, client_secret).
    pub fn register(&self, redirect_uris: &[&str]) -> (String, String) {
        let mut resp = agent()
            .post(&format!("{}/oauth2/clients", self.issuer))
            .header("content-type", "application/json")
            .send(serde_json::json!({"redirect_uris": redirect_uris}).to_string())
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// The provider's answer to a person choosing `sub` on its form: the
    /// redirect back to the client (Location).
    pub fn approve(&self, authorize_url: &str, sub: &str) -> String {
        let resp = agent()
            .post(authorize_url)
            .send_form([("sub", sub)])
            .unwrap();
        assert_eq!(
            resp.status(),
            302,
            "the provider refused the authorization request"
        );
        resp.headers()["location"].to_str().unwrap().to_owned()
    }

    /// An ID token for `sub`, by the code flow with PKCE, through `base`
    /// (the issuer, or another address of the same provider).
    pub fn id_token(
        &self,
        base: &str,
        client: &(String, String),
        redirect: &str,
        sub: &str,
        nonce: &str,
    ) -> String {
        let verifier = "a-verifier-of-forty-three-characters-or-more-0123456789";
        let challenge =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier));
        let mut u = url::Url::parse(&format!("{base}/oauth2/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.0)
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", "openid")
            .append_pair("state", "s")
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let back = url::Url::parse(&self.approve(u.as_str(), sub)).unwrap();
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1));
        let mut resp = agent()
            .post(&format!("{base}/oauth2/token"))
            .header("authorization", format!("Basic {basic}"))
            .send_form([
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", verifier),
            ])
            .unwrap();
        let text = resp.body_mut().read_to_string().unwrap();
        assert_eq!(resp.status(), 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["id_token"].as_str().unwrap().to_owned()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// The `[web]` section for tenant alpha signing in with `client` at
/// `issuer`; the secret goes to a file in `dir`.
pub fn web_config(
    dir: &std::path::Path,
    public_url: &str,
    issuer: &str,
    client: &(String, String),
) -> String {
    let secret = dir.join("oidc-secret");
    std::fs::write(&secret, &client.1).unwrap();
    format!(
        r#"
[web]
public_url = "{public_url}"
[[web.sign_in]]
tenant = "alpha"
issuer = "{issuer}"
client_id = "{}"
client_secret_file = "{}"
role_claim = "roles"
roles = {{ learners = "learner", devs = "developer", release = "release-manager", admins = "admin" }}
"#,
        client.0,
        secret.display()
    )
}
