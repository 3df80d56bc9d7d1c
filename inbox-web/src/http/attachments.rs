//! `/api/v1/attachments`: files an agent attaches to a reply, and the stored blobs (uploads, the
//! customers' attachments, raw mail) streamed back for download.
//!
//! `POST /api/v1/attachments?filename=<name>` takes the raw file bytes as the body (its
//! `Content-Type` is the file's), stores them under `uploads/<uuidv7>/<name>` and answers 201 with
//! the [`AttachmentRef`] to put in a reply's `attachments`. `GET /api/v1/attachments/<key>` streams
//! a blob back as a download (`Content-Disposition: attachment`, `nosniff`), with the content type
//! of `?content_type=` (the reference's) or one guessed from the name.

use crate::http::route_table::RouteTable;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt;
use inbox_core::envelope::{AttachmentRef, BlobRef};
use inbox_core::file_name::clean_file_name;
use object_store::path::Path as BlobPath;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, CurrentAgent, WebState};

/// Largest file an agent can upload.
pub const MAX_UPLOAD: usize = 25 * 1024 * 1024;
/// Where uploads are stored; replies may only reference blobs under it.
pub const UPLOAD_PREFIX: &str = "uploads/";
/// Blob prefixes that can be downloaded: uploads, the customers' attachments, raw mail.
const DOWNLOADABLE: [&str; 3] = [UPLOAD_PREFIX, "attachments/", "raw/"];
/// A body that goes this far past the limit is not read to its end: the connection is dropped.
const MAX_DRAIN: usize = 2 * MAX_UPLOAD;
const OCTET_STREAM: &str = "application/octet-stream";

pub fn routes() -> RouteTable<WebState> {
    RouteTable::new()
        .post("/api/v1/attachments", upload)
        .get("/api/v1/attachments/{*key}", download)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// The file's name (required): its last `/` or `\` segment, without control or invisible
    /// formatting characters and leading dots, cut to 150 characters, must not be empty.
    #[param(
        required = true,
        min_length = 1,
        pattern = r"^(?:[\s\S]*[/\\])?[^/\\]*[^/\\.\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^/\\]*$"
    )]
    filename: Option<String>,
}

/// The name as the last segment of a blob key: ASCII letters, digits, `.`, `-` and `_` only, so
/// the key reads the same in every object store and in URLs.
fn key_segment(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A `type/subtype[; params]` value, or `None`.
fn valid_content_type(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let essence = raw.split(';').next().unwrap_or_default().trim();
    let (kind, sub) = essence.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    (raw.len() <= 255
        && token(kind)
        && token(sub)
        && raw.chars().all(|c| c.is_ascii() && !c.is_ascii_control()))
    .then(|| raw.to_owned())
}

/// A file's raw bytes.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(
    dead_code,
    reason = "only describes the bodies of `upload` and `download`"
)]
struct FileBytes(Vec<u8>);

fn too_large() -> Response {
    let body = serde_json::json!({
        "error": "too_large",
        "message": format!("the file is larger than {} MB", MAX_UPLOAD / (1024 * 1024)),
    });
    let mut response = (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response();
    // What the client still sends is not read.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[utoipa::path(
    post,
    path = "/api/v1/attachments",
    tag = "attachments",
    params(UploadQuery),
    request_body(content = FileBytes, description = "The raw file bytes (at most 25 MiB); `Content-Type` is the file's.", content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "The reference to put in a reply's `attachments`.", body = AttachmentRef),
        (status = 400, description = "A bad parameter or body; `field` names it.", body = super::openapi::ErrorBody),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 413, description = "The file is larger than 25 MiB.", body = super::openapi::ErrorBody),
    )
)]
async fn upload(
    State(state): State<WebState>,
    CurrentAgent(agent): CurrentAgent,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = query
        .filename
        .as_deref()
        .and_then(clean_file_name)
        .ok_or_else(|| ApiError::invalid("filename", "a file name is required (?filename=…)"))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(valid_content_type)
        .unwrap_or_else(|| OCTET_STREAM.to_owned());
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_DRAIN) {
        return Ok(too_large());
    }
    // Read to the end even past the limit (up to MAX_DRAIN), so the client gets to read the 413
    // instead of a connection reset in the middle of its upload.
    let mut bytes = BytesMut::new();
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid("body", format!("unreadable: {e}")))?;
        seen += chunk.len();
        if seen > MAX_DRAIN {
            return Ok(too_large());
        }
        if seen <= MAX_UPLOAD {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_UPLOAD {
        return Ok(too_large());
    }
    let key = format!(
        "{UPLOAD_PREFIX}{}/{}",
        uuid::Uuid::now_v7().simple(),
        key_segment(&name)
    );
    let size = bytes.len() as u64;
    state
        .blobs
        .put(&BlobPath::from(key.as_str()), bytes.freeze().into())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, %key, "Upload not stored.");
            ApiError::Internal
        })?;
    tracing::info!(agent_id = %agent.id, %key, size, "Attachment uploaded.");
    let reference = AttachmentRef {
        name,
        content_type: Some(content_type),
        size: Some(size),
        blob: BlobRef(key),
    };
    Ok((StatusCode::CREATED, axum::Json(reference)).into_response())
}

/// Checks that a reply's attachments are uploads that exist, cleans their names and sets their
/// stored sizes; an error names the field (`attachments[i].blob` / `attachments[i].name`).
pub async fn check_uploads(state: &WebState, refs: &mut [AttachmentRef]) -> Result<(), ApiError> {
    for (i, attachment) in refs.iter_mut().enumerate() {
        let size = check_upload(state, &attachment.blob.0)
            .await
            .map_err(|message| ApiError::invalid(format!("attachments[{i}].blob"), message))?;
        attachment.name = clean_file_name(&attachment.name)
            .ok_or_else(|| ApiError::invalid(format!("attachments[{i}].name"), "empty"))?;
        attachment.size = Some(size);
    }
    Ok(())
}

/// Checks that a reply's attachment is an upload that exists; returns its stored size, or what
/// is wrong with it.
async fn check_upload(state: &WebState, key: &str) -> Result<u64, String> {
    if !key.starts_with(UPLOAD_PREFIX) || !safe_key(key) {
        return Err(format!(
            "must be the blob of an upload (`{UPLOAD_PREFIX}…`, from POST /api/v1/attachments)"
        ));
    }
    match state.blobs.head(&BlobPath::from(key)).await {
        Ok(meta) => Ok(meta.size),
        Err(object_store::Error::NotFound { .. }) => Err(format!("no uploaded file {key}")),
        Err(e) => {
            tracing::error!(error = %e, %key, "Blob storage not readable.");
            Err(format!("{key} cannot be checked now; try again"))
        }
    }
}

/// No empty, `.` or `..` segments and no control characters.
fn safe_key(key: &str) -> bool {
    !key.chars().any(char::is_control)
        && key
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DownloadQuery {
    /// The content type to answer with (the reference's); else (or when it is no `type/subtype`)
    /// guessed from the name.
    content_type: Option<String>,
}

/// A content type from a file name's extension, for blobs whose reference is not at hand.
fn guess_content_type(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" | "log" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "eml" => "message/rfc822",
        "zip" => "application/zip",
        "json" => "application/json",
        _ => OCTET_STREAM,
    }
}

/// `Content-Disposition: attachment` with an ASCII fallback name and the UTF-8 one (RFC 6266).
fn disposition(name: &str) -> HeaderValue {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[utoipa::path(
    get,
    path = "/api/v1/attachments/{key}",
    tag = "attachments",
    params(("key" = String, Path, pattern = r"^(uploads|attachments|raw)/", example = "uploads/019a2b3c4d5e7f00a1b2c3d4e5f60718/receipt.txt", description = "The blob key (`uploads/…`, `attachments/…` or `raw/…`; may contain `/`)."), DownloadQuery),
    responses(
        (status = 200, description = "The file, as a download, of the type `content_type` names or one guessed from its name.", content_type = "*/*", body = FileBytes),
        (status = 401, description = "No valid Bearer token or session.", body = super::openapi::ErrorBody),
        (status = 404, description = "Not found (a malformed id too).", body = super::openapi::ErrorBody),
    )
)]
async fn download(
    State(state): State<WebState>,
    CurrentAgent(_): CurrentAgent,
    Path(key): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    if !DOWNLOADABLE.iter().any(|prefix| key.starts_with(prefix)) || !safe_key(&key) {
        return Err(ApiError::NotFound("attachment"));
    }
    let found = match state.blobs.get(&BlobPath::from(key.as_str())).await {
        Ok(found) => found,
        Err(object_store::Error::NotFound { .. }) => return Err(ApiError::NotFound("attachment")),
        Err(e) => {
            tracing::error!(error = %e, %key, "Blob storage not readable.");
            return Err(ApiError::Unavailable);
        }
    };
    let name = key.rsplit('/').next().unwrap_or("attachment");
    let content_type = query
        .content_type
        .as_deref()
        .and_then(valid_content_type)
        .unwrap_or_else(|| guess_content_type(name).to_owned());
    let size = found.meta.size;
    let mut response = Body::from_stream(found.into_stream()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or_else(|_| HeaderValue::from_static(OCTET_STREAM)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(header::CONTENT_DISPOSITION, disposition(name));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_are_ascii() {
        assert_eq!(key_segment("Rechnung März.pdf"), "Rechnung_M_rz.pdf");
    }

    #[test]
    fn content_types_are_checked() {
        assert_eq!(
            valid_content_type("text/plain; charset=utf-8").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(valid_content_type("nonsense"), None);
        assert_eq!(valid_content_type("text/html\r\nX-Evil: 1"), None);
    }

    #[test]
    fn keys_cannot_climb() {
        assert!(safe_key("uploads/0190/a.pdf"));
        assert!(!safe_key("uploads/../inbox.db"));
        assert!(!safe_key("uploads//a"));
        assert!(!safe_key("uploads/./a"));
    }

    #[test]
    fn dispositions_carry_both_names() {
        assert_eq!(
            disposition("März \"x\".pdf"),
            "attachment; filename=\"M_rz _x_.pdf\"; filename*=UTF-8''M%C3%A4rz%20%22x%22.pdf"
        );
    }
}
