//! The HTTP side: `GET /metrics` on a TCP listener, served by axum.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::render::{render, CONTENT_TYPE};
use crate::api::{self, Services};

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listener could not be bound (or handed to the runtime).
    #[error("binding the metrics listener {addr}: {cause}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// Serving stopped with an error.
    #[error("serving metrics on {addr}: {cause}")]
    Serve {
        /// The bound address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
}

/// Binds `addr` for [`serve_on`] (a plain std listener, so the agent can
/// bind at start-up, before its runtime work begins).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    let bind_err = |cause| MetricsError::Bind { addr, cause };
    let listener = TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    Ok(listener)
}

/// Serves `GET /metrics` from `services` on `listener` until `shutdown`
/// resolves; scrapes in flight then finish. Runs on a tokio runtime.
pub async fn serve_on(
    listener: TcpListener,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    let requested = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|cause| MetricsError::Bind {
            addr: requested,
            cause,
        })?;
    let addr = listener.local_addr().unwrap_or(requested);
    tracing::info!(%addr, "metrics listening");
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(services);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|cause| MetricsError::Serve { addr, cause })?;
    tracing::debug!(%addr, "metrics stopped");
    Ok(())
}

/// One scrape: the `status` answer, rendered.
async fn scrape(State(services): State<Services>) -> Response {
    let status = api::status(&services).await;
    match render(&status) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "encoding metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}
