//! [`RunApiClient`] as a [`RunLister`]: the platform's list of recent runs
//! ([`RunList`](runhook_core::platform::RunList)), read one page at a time, finished runs only.

use std::time::SystemTime;

use http::StatusCode;
use runhook_core::payload::{from_run_api, ApiRun};
use runhook_core::platform::RunList;
use serde_json::Value;

use super::client::RunApiClient;
use super::sweep::{Listed, ListedPage, RunLister};
use super::FetchError;
use crate::handler::BoxFuture;

/// Runs asked for per page (the most both documented lists give).
const PAGE_SIZE: u32 = 100;

impl RunLister for RunApiClient {
    fn list_page<'a>(
        &'a self,
        since: SystemTime,
        next: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ListedPage, FetchError>> {
        Box::pin(async move {
            let Some(list) = self.run_api().list else {
                return Ok(ListedPage::default());
            };
            match list {
                RunList::CreatedAfterCursor { path } => self.cursor_page(path, since, next).await,
                RunList::NumberedPages { path } => self.numbered_page(path, since, next).await,
                _ => Ok(ListedPage::default()),
            }
        })
    }
}

impl RunApiClient {
    /// A page of a list filtered by `created_after`, each item a whole run (TinyFish).
    async fn cursor_page(
        &self,
        path: &str,
        since: SystemTime,
        cursor: Option<&str>,
    ) -> Result<ListedPage, FetchError> {
        let mut url = self.url_at(path);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair(
                "created_after",
                &humantime::format_rfc3339_seconds(since).to_string(),
            );
            query.append_pair("limit", &PAGE_SIZE.to_string());
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
        }
        let page = self.list_json(url).await?;
        let mut runs = Vec::new();
        for item in items(&page) {
            let Some(run_id) = item.get("run_id").and_then(Value::as_str) else {
                continue;
            };
            let bytes = serde_json::to_vec(item).map_err(|e| not_a_list(e.to_string()))?;
            if let ApiRun::Terminal(event) = from_run_api(self.provider(), run_id, &bytes)? {
                runs.push(Listed::Whole(event));
            }
        }
        let pagination = page.get("pagination");
        let more = pagination
            .and_then(|p| p.get("has_more"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let next = pagination
            .and_then(|p| p.get("next_cursor"))
            .and_then(Value::as_str)
            .filter(|_| more)
            .map(str::to_owned);
        Ok(ListedPage { runs, next })
    }

    /// A numbered page of a list newest first by `created_at`, each item naming a run (Skyvern);
    /// the last page is the first to reach a run created before `since`.
    async fn numbered_page(
        &self,
        path: &str,
        since: SystemTime,
        page: Option<&str>,
    ) -> Result<ListedPage, FetchError> {
        let number: u32 = page.and_then(|p| p.parse().ok()).unwrap_or(1);
        let mut url = self.url_at(path);
        url.query_pairs_mut()
            .append_pair("page", &number.to_string())
            .append_pair("page_size", &PAGE_SIZE.to_string());
        let answer = self.list_json(url).await?;
        let items = items(&answer);
        let api = self.run_api();
        let mut runs = Vec::new();
        let mut reached_older = false;
        for item in items {
            let created = item
                .get("created_at")
                .and_then(Value::as_str)
                .and_then(|at| humantime::parse_rfc3339_weak(at.trim_end_matches('Z')).ok());
            if created.is_some_and(|at| at < since) {
                reached_older = true;
                continue;
            }
            let (Some(run_id), Some(status)) = (
                item.get("run_id").and_then(Value::as_str),
                item.get("status").and_then(Value::as_str),
            ) else {
                continue;
            };
            if api.is_terminal(status) {
                runs.push(Listed::Named {
                    run_id: run_id.to_owned(),
                });
            }
        }
        let full = items.len() >= PAGE_SIZE as usize;
        let next = (full && !reached_older).then(|| (number + 1).to_string());
        Ok(ListedPage { runs, next })
    }

    /// One GET of a list page as JSON (a 404 is an empty list).
    async fn list_json(&self, url: reqwest::Url) -> Result<Value, FetchError> {
        match self.get_once(url).await? {
            (StatusCode::NOT_FOUND, _) => Ok(Value::Null),
            (status, body) if status.is_success() => {
                serde_json::from_slice(&body).map_err(|e| not_a_list(e.to_string()))
            }
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
                Err(FetchError::Unauthorized(401))
            }
            (status, _) => Err(FetchError::Status {
                status: status.as_u16(),
                retry_after: None,
            }),
        }
    }
}

/// A list answer's items: a JSON array, or one under `data` or `runs`.
fn items(answer: &Value) -> &[Value] {
    let list = match answer {
        Value::Array(_) => Some(answer),
        Value::Object(map) => map.get("data").or_else(|| map.get("runs")),
        _ => None,
    };
    list.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn not_a_list(reason: String) -> FetchError {
    FetchError::Answer(runhook_core::payload::RunApiError::NotARun(reason))
}
