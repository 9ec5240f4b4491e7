//! Bad uploads: each gets its 4xx problem, leaves no job and no file behind, and the server
//! keeps serving.

use std::io::Write;

use reqwest::multipart::Form;
use serde_json::{json, Value};

use crate::helpers::*;

fn form(model: Vec<u8>, data: Vec<u8>) -> Form {
    Form::new().part("model", part(model, "model.safetensors")).part("data", part(data, "data.json"))
}

fn good_data() -> Vec<u8> {
    dataset_json(4).to_string().into_bytes()
}

fn zip_of(entries: &[(&str, Vec<u8>)], symlink: Option<(&str, &str)>) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut cursor);
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        if let Some((name, target)) = symlink {
            zip.add_symlink(name, target, options).unwrap();
        }
        zip.finish().unwrap();
    }
    cursor.into_inner()
}

fn tar_gz_with_symlink() -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder.append_link(&mut header, "data/DS_A.txt", "/etc/passwd").unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

fn tar_gz_with_traversal() -> Vec<u8> {
    let mut raw = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut raw);
        let mut header = tar::Header::new_gnu();
        let body = b"1, 2\n";
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses "..", so write the name bytes directly.
        let name = b"../../escape.txt";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        builder.append(&header, &body[..]).unwrap();
        builder.finish().unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

fn first_f32_tensor(header: &Value) -> String {
    header
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, v)| {
            k.as_str() != "__metadata__" && v["dtype"] == "F32" && v["shape"].as_array().is_some_and(|s| !s.is_empty())
        })
        .map(|(k, _)| k.clone())
        .unwrap()
}

fn spec_with(changes: Value) -> Value {
    let mut spec = spec_json();
    for (k, v) in changes.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

fn model_with_spec(spec: &Value) -> Vec<u8> {
    safetensors_bytes(Some(spec), &[("w", vec![2], vec![0.5, 0.25])])
}

/// Sends `form`, checks status and code, then that nothing was left behind.
async fn assert_refused(app: &TestApp, form: Form, status: u16, code: &str) {
    let r = app.submit(form).await;
    assert_eq!(r.status().as_u16(), status, "expected {status} {code}");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["detail"].is_string() && body["title"].is_string() && body["type"].is_string());
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0, "no job for {code}");
    assert!(app.files_on_disk().is_empty(), "files left behind for {code}: {:?}", app.files_on_disk());
}

async fn abuse_app() -> TestApp {
    spawn_app_with(
        &["--max-unpacked-bytes", "1000000", "--max-model-bytes", "100000", "--max-data-bytes", "200000", "--max-graphs", "50"],
        std::sync::Arc::new(crate::runner::ScriptedRunner),
    )
    .await
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let app = abuse_app().await;
    assert_refused(&app, Form::new().part("model", part(model_bytes(), "m")), 400, "missing_part").await;
    assert_refused(&app, form(model_bytes(), good_data()).part("extra", part(vec![1], "x")), 400, "unknown_part").await;
    assert_refused(&app, form(model_bytes(), good_data()).part("data", part(good_data(), "d")), 400, "duplicate_part").await;
    let r = app.post("/v1/jobs").body("not multipart").header("content-type", "text/plain").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "malformed_multipart");
    let r = app.post("/v1/jobs").header("idempotency-key", "").multipart(job_form(json!({}))).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn bad_safetensors_are_refused() {
    let app = abuse_app().await;
    let good = model_bytes();
    // Truncated: the header promises more bytes than the file has.
    assert_refused(&app, form(good[..good.len() / 2].to_vec(), good_data()), 422, "invalid_model").await;
    // Header length far beyond the file.
    let mut huge = (1u64 << 40).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert_refused(&app, form(huge, good_data()), 415, "unsupported_format").await;
    let mut oversized_header = (50_000u64).to_le_bytes().to_vec();
    oversized_header.extend_from_slice(b"{\"a\":1}");
    assert_refused(&app, form(oversized_header, good_data()), 422, "invalid_model").await;
    // Malformed JSON header.
    let mut bad_json = 12u64.to_le_bytes().to_vec();
    bad_json.extend_from_slice(b"{not json!!}");
    assert_refused(&app, form(bad_json, good_data()), 422, "invalid_model").await;
    // A shape that does not match the data offsets.
    let (mut header, data) = split_safetensors(&model_bytes());
    let name = first_f32_tensor(&header);
    header[&name]["shape"][0] = json!(header[&name]["shape"][0].as_u64().unwrap() + 1);
    assert_refused(&app, form(join_safetensors(&header, &data), good_data()), 422, "invalid_model").await;
    // A tensor the architecture needs is missing.
    let (mut header, data) = split_safetensors(&model_bytes());
    let name = first_f32_tensor(&header);
    header.as_object_mut().unwrap().remove(&name);
    assert_refused(&app, form(join_safetensors(&header, &data), good_data()), 422, "invalid_model").await;
    // No spec anywhere.
    let (mut header, data) = split_safetensors(&model_bytes());
    header.as_object_mut().unwrap().remove("__metadata__");
    assert_refused(&app, form(join_safetensors(&header, &data), good_data()), 422, "invalid_model").await;
    // NaN and infinite weights.
    for bad in [f32::NAN, f32::INFINITY] {
        let (header, mut data) = split_safetensors(&model_bytes());
        let start = header[&first_f32_tensor(&header)]["data_offsets"][0].as_u64().unwrap() as usize;
        data[start..start + 4].copy_from_slice(&bad.to_le_bytes());
        assert_refused(&app, form(join_safetensors(&header, &data), good_data()), 422, "invalid_model").await;
    }
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

/// The model's bytes with `entry` (raw JSON text, `"name":{...}`) put first in the header.
fn with_header_entry_first(model: &[u8], entry: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(model[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&model[8..8 + n]).unwrap();
    let header = format!("{{{entry},{}", &header[1..]);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&model[8 + n..]);
    out
}

#[tokio::test]
async fn a_header_naming_a_tensor_twice_is_refused() {
    let app = abuse_app().await;
    let good = model_bytes();
    let (header, _) = split_safetensors(&good);
    let name = first_f32_tensor(&header);
    // The same entry twice (JSON parsers keep one silently), and a second entry of that name
    // pointing at another tensor's bytes.
    let other = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, v)| k.as_str() != "__metadata__" && **k != name && v["dtype"] == "F32")
        .map(|(_, v)| v.clone())
        .unwrap();
    let spec = header["__metadata__"][gcleaner_engine::models::SPEC_METADATA_KEY].clone();
    let metadata = json!({ gcleaner_engine::models::SPEC_METADATA_KEY: spec });
    let cases = [
        (format!("{}:{}", json!(name), header[&name]), name.clone()),
        (format!("{}:{other}", json!(name)), name.clone()),
        (format!("\"__metadata__\":{metadata}"), "__metadata__".to_string()),
    ];
    for (entry, named) in cases {
        let model = with_header_entry_first(&good, &entry);
        let r = app.submit(form(model.clone(), good_data())).await;
        assert_eq!(r.status(), 422);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_model", "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("{named:?} more than once")), "{detail}");
        assert_refused(&app, form(model, good_data()), 422, "invalid_model").await;
    }
    // The untouched model is still accepted.
    assert_eq!(app.submit(form(good, good_data())).await.status(), 202);
}

#[tokio::test]
async fn pickles_are_refused_by_content_whatever_their_name() {
    let app = abuse_app().await;
    // A protocol-4 pickle that would call os.system on load.
    let pickle =
        b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x94\x85\x94R\x94."
            .to_vec();
    assert_refused(&app, form(pickle.clone(), good_data()), 415, "pickle_refused").await;
    let text_pickle = b"cos\nsystem\n(S'id'\ntR.".to_vec();
    assert_refused(&app, form(text_pickle, good_data()), 415, "pickle_refused").await;
    // torch.save's format: a zip holding data.pkl.
    let torch_zip = zip_of(&[("archive/data.pkl", pickle.clone()), ("archive/version", b"3".to_vec())], None);
    assert_refused(&app, form(torch_zip, good_data()), 415, "pickle_refused").await;
    // A pickle as the data part is not a dataset either.
    assert_refused(&app, form(model_bytes(), pickle), 415, "unsupported_format").await;
}

#[tokio::test]
async fn hostile_archives_are_refused() {
    let app = abuse_app().await;
    // 20 MB of zeros compresses to ~20 KB: over the 1 MB unpacked limit.
    let bomb = zip_of(&[("data/DS_A.txt", vec![0u8; 20_000_000])], None);
    assert!(bomb.len() < 200_000);
    assert_refused(&app, form(model_bytes(), bomb), 422, "archive_refused").await;
    let traversal = zip_of(&[("../../etc/cron.d/x", b"x".to_vec())], None);
    assert_refused(&app, form(model_bytes(), traversal), 422, "archive_refused").await;
    let absolute = zip_of(&[("/tmp/x", b"x".to_vec())], None);
    assert_refused(&app, form(model_bytes(), absolute), 422, "archive_refused").await;
    let link = zip_of(&[("data/ok.txt", b"1".to_vec())], Some(("data/DS_A.txt", "/etc/passwd")));
    assert_refused(&app, form(model_bytes(), link), 422, "archive_refused").await;
    assert_refused(&app, form(model_bytes(), tar_gz_with_symlink()), 422, "archive_refused").await;
    assert_refused(&app, form(model_bytes(), tar_gz_with_traversal()), 422, "archive_refused").await;
    let many: Vec<(String, Vec<u8>)> = (0..1500).map(|i| (format!("f{i}"), vec![])).collect();
    let many: Vec<(&str, Vec<u8>)> = many.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    assert_refused(&app, form(model_bytes(), zip_of(&many, None)), 422, "archive_refused").await;
}

#[tokio::test]
async fn data_that_does_not_fit_the_model_is_refused() {
    let app = abuse_app().await;
    // The model wants 4 node attributes per node; the graphs carry 2.
    let spec = spec_with(json!({ "features": { "kind": "node_attributes", "dim": 4 } }));
    let model = model_bytes_for(&spec);
    let data = json!({ "graphs": [
        { "num_nodes": 2, "edges": [[0, 1]], "label": 0, "node_attributes": [[0.1, 0.2], [0.3, 0.4]] },
        { "num_nodes": 2, "edges": [[0, 1]], "label": 1, "node_attributes": [[0.1, 0.2], [0.3, 0.4]] }
    ]});
    assert_refused(&app, form(model, data.to_string().into_bytes()), 422, "data_model_mismatch").await;
    // Three classes for a two-class model.
    let three = json!({ "graphs": [
        { "num_nodes": 2, "edges": [[0, 1]], "label": 0 }, { "num_nodes": 2, "edges": [], "label": 1 },
        { "num_nodes": 2, "edges": [], "label": 2 }
    ]});
    assert_refused(&app, form(model_bytes(), three.to_string().into_bytes()), 422, "data_model_mismatch").await;
    // Labels outside the model's class labels.
    let spec = spec_with(json!({ "class_labels": [-1, 1] }));
    assert_refused(&app, form(model_bytes_for(&spec), good_data()), 422, "data_model_mismatch").await;
    // Not a dataset at all, and an edge to a missing node.
    assert_refused(&app, form(model_bytes(), b"{\"graphs\": 5}".to_vec()), 422, "invalid_data").await;
    let dangling = json!({ "graphs": [{ "num_nodes": 2, "edges": [[0, 7]], "label": 0 }] });
    assert_refused(&app, form(model_bytes(), dangling.to_string().into_bytes()), 422, "invalid_data").await;
    assert_refused(&app, form(model_bytes(), b"{\"graphs\": []}".to_vec()), 422, "invalid_data").await;
    // More graphs than allowed.
    assert_refused(&app, form(model_bytes(), dataset_json(60).to_string().into_bytes()), 422, "limit_exceeded").await;
}

#[tokio::test]
async fn absurd_specs_are_refused() {
    let app = abuse_app().await;
    for (changes, code) in [
        (json!({ "hidden": 1_000_000_000u64 }), "limit_exceeded"),
        (json!({ "num_layers": 10_000 }), "limit_exceeded"),
        (json!({ "hidden": 0 }), "limit_exceeded"),
        (json!({ "in_features": 7 }), "invalid_spec"),
        (json!({ "format": "other/v9" }), "invalid_spec"),
    ] {
        let spec = spec_with(changes);
        assert_refused(&app, form(model_with_spec(&spec), good_data()), 422, code).await;
    }
    // A separate spec part that is not a spec.
    let f = form(model_bytes(), good_data()).part("spec", part(b"[1,2]".to_vec(), "spec.json"));
    assert_refused(&app, f, 422, "invalid_spec").await;
    let f = form(model_bytes(), good_data()).part("config", part(b"[1]".to_vec(), "c.json"));
    assert_refused(&app, f, 422, "invalid_config").await;
    let f = form(model_bytes(), good_data()).part("config", part(b"{oops".to_vec(), "c.json"));
    assert_refused(&app, f, 422, "invalid_config").await;
}

#[tokio::test]
async fn oversized_uploads_are_413() {
    let app = abuse_app().await;
    let big_model = safetensors_bytes(Some(&spec_json()), &[("w", vec![30_000], vec![0.5; 30_000])]);
    assert_refused(&app, form(big_model, good_data()), 413, "payload_too_large").await;
    assert_refused(&app, form(model_bytes(), vec![b' '; 300_000]), 413, "payload_too_large").await;
    // A body past the route's whole limit is cut off while streaming.
    let huge = vec![0u8; 2_000_000];
    let r = app.submit(Form::new().part("eval", part(huge, "e"))).await;
    assert_eq!(r.status(), 413);
    assert_eq!(app.count("SELECT count(*) FROM jobs").await, 0);
    assert!(app.files_on_disk().is_empty());
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_separate_spec_part_stands_in_for_a_missing_embedded_spec() {
    let app = abuse_app().await;
    let (mut header, data) = split_safetensors(&model_bytes());
    header.as_object_mut().unwrap().remove("__metadata__");
    let model = join_safetensors(&header, &data);
    let f = form(model.clone(), good_data()).part("spec", part(spec_json().to_string().into_bytes(), "spec.json"));
    let r = app.submit(f).await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    // A spec part that does not match the tensors is refused.
    let wrong = spec_with(json!({ "hidden": 16 }));
    let f = form(model, good_data()).part("spec", part(wrong.to_string().into_bytes(), "spec.json"));
    let r = app.submit(f).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "invalid_model");
}
