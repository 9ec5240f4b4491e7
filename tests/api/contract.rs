//! Checks the running API against openapi/openapi.yaml: every documented operation is exercised,
//! every observed (route, method, status) is documented, content types match, and JSON bodies
//! validate against their schemas (a subset of JSON Schema: $ref, type, required, properties,
//! items, enum, oneOf, minimum, maximum).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn document() -> Value {
    serde_yaml::from_str(include_str!("../../openapi/openapi.yaml")).expect("openapi.yaml parses")
}

fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = r.strip_prefix('#').expect("local refs only");
        schema = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    schema
}

fn type_matches(value: &Value, ty: &str) -> bool {
    match ty {
        "null" => value.is_null(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        other => panic!("unsupported type {other}"),
    }
}

/// Errors of `value` against `schema`, with JSON pointers.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|s| {
                let mut e = Vec::new();
                validate(doc, s, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!("{at}: matches {matching} of oneOf"));
        }
        return;
    }
    if let Some(ty) = schema.get("type") {
        let ok = match ty {
            Value::String(t) => type_matches(value, t),
            Value::Array(ts) => ts.iter().any(|t| type_matches(value, t.as_str().unwrap())),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {value} is not of type {ty}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            errors.push(format!("{at}: {value} not in enum"));
        }
    }
    if let (Some(min), Some(v)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64()) {
        if v < min {
            errors.push(format!("{at}: {v} < minimum {min}"));
        }
    }
    if let (Some(max), Some(v)) = (schema.get("maximum").and_then(Value::as_f64), value.as_f64()) {
        if v > max {
            errors.push(format!("{at}: {v} > maximum {max}"));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !object.contains_key(name.as_str().unwrap()) {
                errors.push(format!("{at}: missing required {name}"));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                if let Some(v) = object.get(name) {
                    validate(doc, sub, v, &format!("{at}/{name}"), errors);
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            validate(doc, items, v, &format!("{at}/{i}"), errors);
        }
    }
}

struct Checker {
    doc: Value,
    seen: BTreeSet<(String, String)>,
}

impl Checker {
    /// Checks one exchange against the documented operation `template` / `method`.
    async fn check(&mut self, template: &str, method: &str, response: reqwest::Response) -> Value {
        let status = response.status().as_u16().to_string();
        let operation = self
            .doc
            .pointer(&format!("/paths/{}/{}", template.replace('~', "~0").replace('/', "~1"), method.to_lowercase()))
            .unwrap_or_else(|| panic!("{method} {template} is not documented"))
            .clone();
        self.seen.insert((template.to_string(), method.to_lowercase()));
        let documented = operation["responses"]
            .get(&status)
            .unwrap_or_else(|| panic!("{method} {template} answered {status}, which is not documented"));
        let documented = resolve(&self.doc, documented).clone();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().split(';').next().unwrap().trim().to_string());
        let body = response.bytes().await.unwrap();
        let Some(content) = documented.get("content").and_then(Value::as_object) else {
            assert!(body.is_empty(), "{method} {template} {status}: undocumented body");
            return Value::Null;
        };
        let content_type = content_type.unwrap_or_else(|| panic!("{method} {template} {status}: no content type"));
        let media = content
            .get(&content_type)
            .unwrap_or_else(|| panic!("{method} {template} {status}: content type {content_type} not documented"));
        if content_type.ends_with("json") {
            let value: Value = serde_json::from_slice(&body).expect("JSON body");
            let mut errors = Vec::new();
            validate(&self.doc, &media["schema"], &value, "", &mut errors);
            assert!(errors.is_empty(), "{method} {template} {status}: {errors:?}\n{value}");
            value
        } else {
            Value::String(String::from_utf8_lossy(&body).into_owned())
        }
    }
}

#[tokio::test]
async fn served_document_is_the_yaml_source() {
    let app = spawn_app().await;
    let served: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(served, document());
}

#[tokio::test]
async fn every_route_and_status_matches_the_openapi_document() {
    let app = spawn_app_with(&["--max-model-bytes", "100000"], std::sync::Arc::new(crate::runner::ScriptedRunner)).await;
    let mut c = Checker { doc: document(), seen: BTreeSet::new() };
    let other = app.other_tenant_token().await;

    c.check("/healthz", "GET", app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    c.check("/readyz", "GET", app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    c.check("/metrics", "GET", app.client.get(app.url("/metrics")).send().await.unwrap()).await;
    c.check("/openapi.json", "GET", app.client.get(app.url("/openapi.json")).send().await.unwrap()).await;

    // Submission: accepted, replayed, and each family of refusal.
    let r = app
        .post("/v1/jobs")
        .header("idempotency-key", "k")
        .multipart(job_form(json!({ "test": { "epochs": 2 } })))
        .send()
        .await
        .unwrap();
    let job = c.check("/v1/jobs", "POST", r).await;
    let id = job_id(&job);
    let r = app
        .post("/v1/jobs")
        .header("idempotency-key", "k")
        .multipart(job_form(json!({ "test": { "epochs": 2 } })))
        .send()
        .await
        .unwrap();
    c.check("/v1/jobs", "POST", r).await;
    let r = app.post("/v1/jobs").header("idempotency-key", "k").multipart(job_form(json!({}))).send().await.unwrap();
    c.check("/v1/jobs", "POST", r).await; // 422
    let r = app.client.post(app.url("/v1/jobs")).multipart(job_form(json!({}))).send().await.unwrap();
    c.check("/v1/jobs", "POST", r).await; // 401
    let r = app.post("/v1/jobs").body("x").header("content-type", "text/plain").send().await.unwrap();
    c.check("/v1/jobs", "POST", r).await; // 400
    let pickle = b"\x80\x04\x95.".to_vec();
    let form = reqwest::multipart::Form::new()
        .part("model", part(pickle, "m.safetensors"))
        .part("data", part(dataset_json(2).to_string().into_bytes(), "d"));
    c.check("/v1/jobs", "POST", app.submit(form).await).await; // 415
    let big = safetensors_bytes(Some(&spec_json()), &[("w", vec![30_000], vec![0.5; 30_000])]);
    let form = reqwest::multipart::Form::new()
        .part("model", part(big, "m"))
        .part("data", part(dataset_json(2).to_string().into_bytes(), "d"));
    c.check("/v1/jobs", "POST", app.submit(form).await).await; // 413

    for query in ["", "?limit=1", "?status=queued", "?limit=0"] {
        c.check("/v1/jobs", "GET", app.get(&format!("/v1/jobs{query}")).send().await.unwrap()).await;
    }
    c.check("/v1/jobs", "GET", app.client.get(app.url("/v1/jobs")).send().await.unwrap()).await;

    let t = "/v1/jobs/{id}";
    c.check(t, "GET", app.get(&format!("/v1/jobs/{id}")).send().await.unwrap()).await;
    c.check(t, "GET", app.client.get(app.url(&format!("/v1/jobs/{id}"))).bearer_auth(&other).send().await.unwrap()).await;
    c.check(t, "GET", app.client.get(app.url(&format!("/v1/jobs/{id}"))).send().await.unwrap()).await;

    // Results before and after success.
    for (path, template) in
        [("model", "/v1/jobs/{id}/model"), ("report", "/v1/jobs/{id}/report"), ("report.html", "/v1/jobs/{id}/report.html")]
    {
        let queued = app.job(&id).await;
        if queued["status"] != "succeeded" {
            c.check(template, "GET", app.get(&format!("/v1/jobs/{id}/{path}")).send().await.unwrap()).await;
        }
    }
    let events = app.get(&format!("/v1/jobs/{id}/events")).send().await.unwrap();
    c.check("/v1/jobs/{id}/events", "GET", events).await;
    app.wait_status(&id, "succeeded", Duration::from_secs(30)).await;
    let r = app.get(&format!("/v1/jobs/{id}/model")).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    c.check("/v1/jobs/{id}/model", "GET", r).await;
    c.check(
        "/v1/jobs/{id}/model",
        "GET",
        app.get(&format!("/v1/jobs/{id}/model")).header("if-none-match", etag).send().await.unwrap(),
    )
    .await;
    c.check("/v1/jobs/{id}/report", "GET", app.get(&format!("/v1/jobs/{id}/report")).send().await.unwrap()).await;
    c.check(
        "/v1/jobs/{id}/report",
        "GET",
        app.get(&format!("/v1/jobs/{id}/report")).header("accept", "text/html").send().await.unwrap(),
    )
    .await;
    c.check("/v1/jobs/{id}/report.html", "GET", app.get(&format!("/v1/jobs/{id}/report.html")).send().await.unwrap()).await;
    for template in ["/v1/jobs/{id}/model", "/v1/jobs/{id}/report", "/v1/jobs/{id}/report.html", "/v1/jobs/{id}/events"] {
        let path = template.replace("{id}", &id);
        c.check(template, "GET", app.client.get(app.url(&path)).bearer_auth(&other).send().await.unwrap()).await;
    }

    c.check("/v1/jobs/{id}/cancel", "POST", app.post(&format!("/v1/jobs/{id}/cancel")).send().await.unwrap()).await; // 409
    let queued = job_id(&app.submit_job(json!({ "test": { "epochs": 100, "epoch_ms": 50 } })).await);
    c.check("/v1/jobs/{id}/cancel", "POST", app.post(&format!("/v1/jobs/{queued}/cancel")).send().await.unwrap()).await;
    c.check(
        "/v1/jobs/{id}/cancel",
        "POST",
        app.client.post(app.url(&format!("/v1/jobs/{queued}/cancel"))).bearer_auth(&other).send().await.unwrap(),
    )
    .await;

    c.check(t, "DELETE", app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap()).await;
    c.check(t, "DELETE", app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap()).await;

    let documented: BTreeSet<(String, String)> = c.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    assert_eq!(documented, c.seen, "every documented operation is exercised");
}
