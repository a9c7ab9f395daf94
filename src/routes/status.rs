use actix_web::{HttpResponse, web};

use crate::auth::MaybeAuthorized;
use crate::error::ApiError;
use crate::state::AppState;

/// The fleet. Anonymous callers get it only with `PUBLIC_STATUS=true`, and then without `extra`,
/// which bots may fill with private data.
pub async fn status(
    caller: MaybeAuthorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !caller.authorized && !state.settings.public_status {
        return Err(crate::auth::missing_header());
    }
    let mut fleet = state.store.status().await?;
    if !caller.authorized {
        for shard in &mut fleet.shards {
            shard.extra = None;
        }
    }
    Ok(HttpResponse::Ok().json(fleet))
}
