//! `GET /api/v1/openapi.json`: served anonymously, OpenAPI 3.x, one operation per JSON route, and
//! every `$ref` resolves.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

use std::collections::BTreeSet;

use inbox_e2e::{Backend, TestApp};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every `$ref` anywhere in `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => found.push(target),
                    _ => refs(item, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_describes_every_api_route() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // Anonymous: no token, no cookie.
    let response = reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let doc: Value = response.json().await.unwrap();

    let version = doc["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3."), "{version}");

    let paths = doc["paths"].as_object().expect("`paths`");
    let operations: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    // What the router serves under /api/v1 (the document itself aside), as the router is built:
    // a route added without its `#[utoipa::path]` fails here.
    let expected: BTreeSet<(String, String)> =
        inbox_app::app::served_routes(&inbox_connectors::Registry::with_builtin())
            .into_iter()
            .filter(|r| r.path.starts_with("/api/v1/") && r.path != "/api/v1/openapi.json")
            .map(|r| (r.method.to_string(), r.path.replace("{*", "{")))
            .collect();
    assert_eq!(operations, expected);

    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("component schemas");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty(), "the document refers to no schema");
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target} is not a component schema"));
        assert!(schemas.contains_key(name), "{target} does not resolve");
    }

    // The API is guarded by Bearer tokens; errors have their documented body.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(schemas.contains_key("ErrorBody"));
    let listing = &paths["/api/v1/conversations"]["get"]["responses"];
    for status in ["200", "400", "401"] {
        assert!(listing.get(status).is_some(), "no {status} for the listing");
    }
    assert!(
        paths["/api/v1/attachments"]["post"]["responses"]
            .get("413")
            .is_some()
    );

    // The limits the server enforces are stated (Schemathesis relies on them:
    // tests/tests/openapi_fuzz.rs).
    let param = |path: &str, method: &str, name: &str| {
        paths[path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{method} {path} has a parameter {name}"))["schema"]
            .clone()
    };
    for (path, max) in [
        ("/api/v1/conversations", 100),
        ("/api/v1/search", 100),
        ("/api/v1/conversations/{id}/messages", 500),
        ("/api/v1/contacts/{id}", 500),
    ] {
        let limit = param(path, "get", "limit");
        assert_eq!(
            (&limit["type"], &limit["minimum"], &limit["maximum"]),
            (&"integer".into(), &1.into(), &max.into()),
            "{path}: {limit}"
        );
    }
    for (path, method) in [
        ("/api/v1/conversations/{id}", "get"),
        ("/api/v1/conversations/{id}", "patch"),
        ("/api/v1/conversations/{id}/messages", "post"),
        ("/api/v1/contacts/{id}", "get"),
        ("/api/v1/contacts/{id}/merge", "post"),
        ("/api/v1/contact-merges/{id}/undo", "post"),
    ] {
        assert_eq!(
            param(path, method, "id")["format"],
            "uuid",
            "{method} {path}"
        );
    }
    assert_eq!(
        param("/api/v1/attachments", "post", "filename")["minLength"],
        1
    );
    let text = &schemas["NewMessage"]["properties"]["text"];
    assert_eq!(
        (&text["minLength"], &text["maxLength"]),
        (&1.into(), &100_000.into())
    );

    app.stop().await;
}
