//! The JSON API for other government systems (`docs/API.md`): the queue with the same
//! filters as the console, cursor paging, an application in full, photos and scans by
//! hash. Each system has its own bearer token (`hq-sync api-token add`), scoped to
//! agencies; what it reads of a person (a detail, a photo, a NIK search) is in the audit
//! log as `api:<name>`. No cookies, so no CSRF; every answer is `no-store`.

use super::views::queue::{filter_of, QueueQuery};
use super::{Console, PageError};
use crate::api_tokens::ApiClient;
use crate::audit::Entry;
use crate::review::Search;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use keliling_shared::decision::Outcome;
use keliling_shared::{ApplicationId, BusId, ServiceCode, Sha256, UnixMillis};
use serde_json::{json, Value};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/api/v1/applications", get(list))
        .route("/api/v1/applications/:bus/:id", get(one))
        .route("/api/v1/blobs/:sha", get(blob))
}

/// The calling system, from `Authorization: Bearer kl_…`.
pub struct Client(pub ApiClient);

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An API error as JSON (never the HTML error page).
pub struct ApiError(Response);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<PageError> for ApiError {
    fn from(e: PageError) -> Self {
        ApiError(match e {
            PageError::NotFound => error(StatusCode::NOT_FOUND, "not_found", "no such item"),
            PageError::BadRequest(m) => error(StatusCode::BAD_REQUEST, "bad_request", &m),
            PageError::Internal(why) => {
                tracing::error!(%why, "api: internal error");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "server error; logged",
                )
            }
            _ => error(StatusCode::FORBIDDEN, "forbidden", "not allowed"),
        })
    }
}

#[axum::async_trait]
impl FromRequestParts<Console> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Client, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
        let unauthorized = || {
            ApiError(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API token is needed: Authorization: Bearer kl_…",
            ))
        };
        let Some(token) = token else {
            return Err(unauthorized());
        };
        let client = c
            .db(move |db| db.api_client(&token, UnixMillis::now()))
            .await?;
        client.map(Client).ok_or_else(unauthorized)
    }
}

fn services_of(c: &Console, client: &ApiClient) -> Vec<ServiceCode> {
    c.catalogue()
        .services
        .iter()
        .filter(|s| client.agencies.contains(&s.agency))
        .map(|s| s.code.clone())
        .collect()
}

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn rfc3339(t: UnixMillis) -> Value {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    q: QueueQuery,
    #[serde(default)]
    cursor: String,
    /// Rows per page (1-200, default 100). A string: flattened query strings carry no
    /// numbers.
    #[serde(default)]
    limit: String,
}

async fn list(
    State(c): State<Console>,
    Client(client): Client,
    Query(mut lq): Query<ListQuery>,
) -> Result<Response, ApiError> {
    lq.q.after = std::mem::take(&mut lq.cursor);
    let limit = if lq.limit.is_empty() {
        100
    } else {
        lq.limit
            .parse::<usize>()
            .map_err(|_| PageError::BadRequest("limit: a number, 1-200".into()))?
            .clamp(1, crate::review::MAX_PAGE)
    };
    let (f, bad_date) = filter_of(&c, &services_of(&c, &client), &lq.q, limit);
    if bad_date {
        return Err(PageError::BadRequest("from/to: YYYY-MM-DD".into()).into());
    }
    if !lq.q.after.is_empty() && f.after.is_none() {
        return Err(PageError::BadRequest("cursor: use next_cursor as given".into()).into());
    }
    let actor = format!("api:{}", client.name);
    let (page, counts) = c
        .db(move |db| {
            let now = UnixMillis::now();
            if let Some(Search::Nik(n)) = &f.search {
                db.audit(&actor, &Entry::new("nik_searched").detail(n.as_str()), now)?;
            }
            Ok::<_, crate::store::HqStoreError>((db.queue(&f, now)?, db.queue_counts(&f)?))
        })
        .await?;
    let items: Vec<Value> = page
        .rows
        .iter()
        .map(|r| {
            json!({
                "tracking_number": r.id.to_string(),
                "bus": r.bus_id.to_string(),
                "service": r.service,
                "village": r.village,
                "applicant_name": r.applicant_name,
                "nik": r.nik,
                "captured_at": rfc3339(r.captured_at),
                "received_at": rfc3339(r.hq_received_at),
                "status": r.status.as_str(),
                "nik_warnings": r.has_warnings,
                "url": format!("/api/v1/applications/{}/{}", r.bus_id, r.id),
            })
        })
        .collect();
    let counts: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
        .collect();
    Ok(json_response(json!({
        "items": items,
        "next_cursor": page.next.map(|n| n.to_string()),
        "counts": counts,
    })))
}

fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Approved { note } => {
            json!({ "kind": "approved", "note": note.as_ref().map(|n| n.as_str()) })
        }
        Outcome::Rejected { code, reason, note } => json!({
            "kind": "rejected", "reason_code": code.as_str(), "reason": reason.as_str(),
            "note": note.as_ref().map(|n| n.as_str()),
        }),
        Outcome::InfoRequested { message, needs } => json!({
            "kind": "info_requested", "message": message.as_str(),
            "needs": needs.iter().map(|n| match n {
                keliling_shared::decision::Need::NewPhoto => "photo".to_owned(),
                keliling_shared::decision::Need::Document(d) => format!("document:{}", d.as_str()),
            }).collect::<Vec<_>>(),
        }),
    }
}

async fn one(
    State(c): State<Console>,
    Client(client): Client,
    Path((bus, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let bus = BusId::parse(&bus).map_err(|_| PageError::NotFound)?;
    let id = ApplicationId::parse(&id).map_err(|_| PageError::NotFound)?;
    let visible = services_of(&c, &client);
    let actor = format!("api:{}", client.name);
    let found = c
        .db(move |db| {
            let now = UnixMillis::now();
            // The access check comes first: another agency's application is "not found".
            if !db.is_visible(&bus, &id, &visible)? {
                return Ok(None);
            }
            db.audit(
                &actor,
                &Entry::application("viewed", bus.as_str(), &id.to_string()),
                now,
            )?;
            let Some(d) = db.detail(&bus, &id, now)? else {
                return Ok(None);
            };
            Ok::<_, crate::store::HqStoreError>(Some((d, db.decisions_of(&bus, &id)?)))
        })
        .await?;
    let (d, decisions) = found.ok_or(PageError::NotFound)?;
    let a = &d.app;
    let fields: serde_json::Map<String, Value> = a
        .fields
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.as_str())))
        .collect();
    Ok(json_response(json!({
        "tracking_number": a.id.to_string(),
        "bus": a.bus_id.to_string(),
        "service": a.service.as_str(),
        "status": d.status.as_str(),
        "operator": a.operator.as_str(),
        "village": a.stop.village.as_str(),
        "gps": a.stop.gps.map(|g| json!([g.lat(), g.lon()])),
        "applicant": {
            "full_name": a.applicant.full_name.as_str(),
            "nik": a.applicant.nik.as_str(),
            "date_of_birth": a.applicant.date_of_birth.to_string(),
            "sex": match a.applicant.sex { keliling_shared::Sex::Male => "male", keliling_shared::Sex::Female => "female" },
            "address": a.applicant.address.as_str(),
            "phone": a.applicant.phone.as_ref().map(|p| p.as_str()),
        },
        "nik_warnings": a.warnings().iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "fields": fields,
        "photo_advice": d.notes.photo_advice.iter().map(|a| a.code()).collect::<Vec<_>>(),
        "attachments": d.blobs.iter().map(|b| json!({
            "kind": b.kind, "media_type": b.media_type, "size": b.size,
            "sha256": b.sha256.to_hex(), "stored": b.stored,
            "url": b.stored.then(|| format!("/api/v1/blobs/{}", b.sha256.to_hex())),
        })).collect::<Vec<_>>(),
        "captured_at": rfc3339(a.captured_at),
        "received_at": rfc3339(d.hq_received_at),
        "clock_skew_ms": d.clock_skew_ms,
        "decisions": decisions.iter().map(|r| json!({
            "version": r.version, "status": r.status, "decided_by": r.decided_by,
            "decided_at": rfc3339(r.decided_at), "delivery": r.delivery.as_str(),
            "confirmed_by_bus_at": r.confirmed_at.map(rfc3339),
            "outcome": outcome_json(&r.outcome),
        })).collect::<Vec<_>>(),
    })))
}

async fn blob(
    State(c): State<Console>,
    Client(client): Client,
    Path(sha): Path<String>,
) -> Result<Response, ApiError> {
    let sha = Sha256::parse_hex(&sha).map_err(|_| PageError::NotFound)?;
    let visible = services_of(&c, &client);
    let actor = format!("api:{}", client.name);
    let blobs = c.blobs().clone();
    let found = c
        .db(move |db| {
            // Served only when an application of the client's agencies references it.
            let Some((bus, id, media)) = db.visible_blob(&sha, &visible)? else {
                return Ok(None);
            };
            let bytes = blobs
                .read_verified(db, &sha)
                .map_err(|e| crate::store::HqStoreError::Corrupt(e.to_string()))?;
            db.audit(
                &actor,
                &Entry::application("blob_viewed", &bus, &id).detail(sha.to_hex()),
                UnixMillis::now(),
            )?;
            Ok::<_, crate::store::HqStoreError>(Some((media, bytes)))
        })
        .await?;
    let (media, bytes) = found.ok_or(PageError::NotFound)?;
    let mime = match media.as_str() {
        "image/jpeg" => "image/jpeg",
        "image/png" => "image/png",
        _ => "application/pdf",
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CONTENT_DISPOSITION, "attachment"),
            (header::CONTENT_SECURITY_POLICY, super::security::BLOB_CSP),
        ],
        bytes,
    )
        .into_response())
}
