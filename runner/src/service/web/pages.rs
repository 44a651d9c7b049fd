//! The page shells: landmarks, navigation for the person's role, the
//! session's CSRF token, and the page's own script. Everything a page
//! shows beyond the shell is fetched by its script from the JSON API and
//! written as text (never as HTML).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::session::{current, principal_of};
use crate::service::api::AppState;
use crate::service::auth::{Action, Principal};

/// Pages run only scripts and styles of this origin; nothing inline, no
/// frames, forms post only here.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted
/// attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    resp
}

pub fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn head(title: &str, extra: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{extra}<title>{} · runner</title>\n<link rel=\"stylesheet\" href=\"/assets/app.css\">\n</head>\n",
        escape(title)
    )
}

/// A page with a heading and a paragraph: errors and notices.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response {
    html(
        status,
        format!(
            "{}<body>\n<main id=\"main\">\n<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"/\">Start page</a></p>\n</main>\n</body>\n</html>\n",
            head(title, ""),
            escape(title),
            escape(text)
        ),
    )
}

struct Page {
    path: &'static str,
    title: &'static str,
    script: &'static str,
    body: &'static str,
    /// Who sees it in the navigation and may open it.
    may: fn(&Principal) -> bool,
}

const PAGES: [Page; 5] = [
    Page {
        path: "/play",
        title: "Playground",
        script: "play",
        body: include_str!("assets/play.html"),
        may: |_| true,
    },
    Page {
        path: "/runs",
        title: "Runs",
        script: "runs",
        body: include_str!("assets/runs.html"),
        may: |_| true,
    },
    Page {
        path: "/workflows",
        title: "Workflows",
        script: "workflows",
        body: include_str!("assets/workflows.html"),
        may: |p| p.role.can(Action::ReadWorkflows),
    },
    Page {
        path: "/releases",
        title: "Releases",
        script: "releases",
        body: include_str!("assets/releases.html"),
        may: |p| p.role.can(Action::ReadReleases),
    },
    Page {
        path: "/admin",
        title: "Keys and repositories",
        script: "admin",
        body: include_str!("assets/admin.html"),
        may: |p| p.role.can(Action::ManageKeys),
    },
];

async fn page(st: &AppState, headers: &HeaderMap, path: &str) -> Response {
    let session = match current(st, headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other("/"),
        Err(e) => return e.into_response(),
    };
    let p = principal_of(&session);
    let Some(this) = PAGES.iter().find(|pg| pg.path == path) else {
        return message(StatusCode::NOT_FOUND, "Not found", "There is no such page.");
    };
    if !(this.may)(&p) {
        return message(
            StatusCode::FORBIDDEN,
            "Not for your role",
            &format!("Your role ({}) may not open this page.", p.role.as_str()),
        );
    }
    let nav: String = PAGES
        .iter()
        .filter(|pg| (pg.may)(&p))
        .map(|pg| {
            let current = if pg.path == path {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<li><a href=\"{}\"{current}>{}</a></li>", pg.path, pg.title)
        })
        .collect();
    let csrf = escape(&session.csrf);
    let extra = format!(
        "<meta name=\"csrf-token\" content=\"{csrf}\">\n<meta name=\"role\" content=\"{}\">\n<script src=\"/assets/common.js\" defer></script>\n<script src=\"/assets/{}.js\" defer></script>\n",
        p.role.as_str(),
        this.script
    );
    let body = format!(
        "{}<body>\n<a class=\"skip\" href=\"#main\">Skip to content</a>\n<header>\n<nav aria-label=\"Main\"><ul>{nav}</ul></nav>\n<div class=\"who\"><span id=\"who\">{} · {} · {}</span>\n<form method=\"post\" action=\"/auth/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Sign out</button></form></div>\n</header>\n<main id=\"main\" tabindex=\"-1\">\n<h1>{}</h1>\n{}</main>\n</body>\n</html>\n",
        head(this.title, &extra),
        escape(&session.name),
        escape(&session.tenant_name),
        p.role.as_str(),
        this.title,
        this.body
    );
    html(StatusCode::OK, body)
}

pub async fn play(State(st): State<AppState>, h: HeaderMap) -> Response {
    page(&st, &h, "/play").await
}
pub async fn runs(State(st): State<AppState>, h: HeaderMap) -> Response {
    page(&st, &h, "/runs").await
}
pub async fn workflows(State(st): State<AppState>, h: HeaderMap) -> Response {
    page(&st, &h, "/workflows").await
}
pub async fn releases(State(st): State<AppState>, h: HeaderMap) -> Response {
    page(&st, &h, "/releases").await
}
pub async fn admin(State(st): State<AppState>, h: HeaderMap) -> Response {
    page(&st, &h, "/admin").await
}

/// The start page: signed in, the playground; otherwise the organisations
/// one can sign in with.
pub async fn home(State(st): State<AppState>, h: HeaderMap) -> Response {
    if let Ok(Some(_)) = current(&st, &h).await {
        return see_other("/play");
    }
    let Some(web) = st.web.as_ref() else {
        return message(
            StatusCode::NOT_FOUND,
            "Sign-in is not enabled",
            "This server answers programs only (the JSON API under /v1).",
        );
    };
    let items: String = web
        .config
        .sign_in
        .iter()
        .map(|s| {
            let t = escape(&s.tenant);
            format!("<li><a href=\"/auth/login?tenant={t}\">Sign in to {t}</a></li>")
        })
        .collect();
    html(
        StatusCode::OK,
        format!(
            "{}<body>\n<main id=\"main\">\n<h1>Sign in</h1>\n<p>Sign in with your organisation's account.</p>\n<ul class=\"orgs\">{items}</ul>\n</main>\n</body>\n</html>\n",
            head("Sign in", "")
        ),
    )
}

const ASSETS: [(&str, &str, &str); 7] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/common.js"),
    ),
    (
        "play.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/play.js"),
    ),
    (
        "runs.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/runs.js"),
    ),
    (
        "workflows.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/workflows.js"),
    ),
    (
        "releases.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/releases.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/admin.js"),
    ),
];

pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => ([(header::CONTENT_TYPE, *ty)], *body).into_response(),
        None => message(StatusCode::NOT_FOUND, "Not found", "There is no such file."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
