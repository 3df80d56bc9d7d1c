//! `POST /widget/{channel_id}/files`: a visitor's upload, and the check that a message attaches
//! only its own chat's files.

use super::*;

/// No upload is read past this (a channel's own limit, `max_upload_bytes`, is at most this).
pub(super) const MAX_UPLOAD_BYTES: usize = 50 * 1024 * 1024;
/// Files a message may carry.
const MAX_FILES: usize = 10;
/// What visitors may send: pictures, PDFs and plain text (nothing a browser would run).
pub(super) const UPLOAD_TYPES: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

/// Where a chat's uploads go: a message may attach only files under it.
fn upload_prefix(key: &ChatKey) -> String {
    format!("attachments/web_chat/{}/{}/", key.channel, key.log)
}

/// The files a message attaches, each checked to be one this chat uploaded (and still there),
/// with a clean name and an allowed type.
pub(super) async fn own_files(
    widget: &Widget,
    key: &ChatKey,
    files: Vec<AttachmentRef>,
) -> Result<Vec<AttachmentRef>, Refused> {
    if files.len() > MAX_FILES {
        return Err(Refused::field(
            "attachments",
            format!("at most {MAX_FILES} files"),
        ));
    }
    let prefix = upload_prefix(key);
    let mut own = Vec::with_capacity(files.len());
    for file in files {
        let path = file.blob.0.as_str();
        if !path.starts_with(&prefix) || path.contains("..") {
            return Err(Refused::field(
                "attachments",
                "only files uploaded to this chat",
            ));
        }
        let meta = widget
            .ctx
            .blobs
            .head(&object_store::path::Path::from(path))
            .await
            .map_err(|_| Refused::field("attachments", "no such upload"))?;
        let name =
            inbox_core::file_name::clean_file_name(&file.name).unwrap_or_else(|| "file".to_owned());
        let content_type = file
            .content_type
            .filter(|t| UPLOAD_TYPES.contains(&t.as_str()));
        own.push(AttachmentRef {
            name,
            content_type,
            size: Some(meta.size),
            blob: file.blob,
        });
    }
    Ok(own)
}

#[derive(Debug, Deserialize)]
pub(super) struct UploadQuery {
    /// The file's name as the visitor's device has it.
    #[serde(default)]
    name: Option<String>,
}

pub(super) async fn upload(
    State(widget): State<Widget>,
    Path(channel_id): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let allowed = match widget.allowed(&channel_id, &headers).await {
        Ok(allowed) => allowed,
        Err(answer) => return answer,
    };
    match take_upload(&widget, &allowed, query, &headers, body).await {
        Ok(file) => allowed.answer((StatusCode::CREATED, axum::Json(file))),
        Err(refused) => allowed.refuse(refused),
    }
}

/// Checks an upload (uploads on, its size and type) and writes it to blob storage under the
/// chat's prefix; returns the reference a message attaches.
async fn take_upload(
    widget: &Widget,
    allowed: &Allowed,
    query: UploadQuery,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Result<AttachmentRef, Refused> {
    let channel = &allowed.channel;
    let chat = allowed.chat(headers)?;
    if !allowed.config.uploads {
        return Err(Refused::UploadsOff);
    }
    let limit = allowed.config.max_upload_bytes;
    if body.len() as u64 > limit {
        return Err(Refused::TooLarge(limit));
    }
    if body.is_empty() {
        return Err(Refused::field("body", "an empty file"));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|t| UPLOAD_TYPES.contains(&t.as_str()))
        .ok_or(Refused::FileType)?;
    widget
        .limits
        .uploads
        .check(&format!("{}\0{}", channel.id, chat.handle))
        .map_err(Refused::TooMany)?;
    let name = query
        .name
        .as_deref()
        .and_then(inbox_core::file_name::clean_file_name)
        .unwrap_or_else(|| "file".to_owned());
    let key = ChatKey {
        channel: channel.id,
        log: visitor::log_key(&chat.handle),
    };
    let blob = format!(
        "{}{}/{}",
        upload_prefix(&key),
        uuid::Uuid::now_v7().simple(),
        crate::blob_path::segment(&name)
    );
    let size = body.len() as u64;
    crate::context::put_blob(&widget.ctx.blobs, &blob, body.to_vec())
        .await
        .map_err(|e| {
            tracing::warn!(channel_id = %channel.id, error = %e, "Upload not written.");
            Refused::Unavailable
        })?;
    Ok(AttachmentRef {
        name,
        content_type: Some(content_type),
        size: Some(size),
        blob: BlobRef(blob),
    })
}
