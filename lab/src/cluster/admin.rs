//! Admin calls to a lab's control plane.
//!
//! The control plane listens on the lab's underlay, whose addresses exist only
//! inside the lab's namespaces; so every call runs on a short-lived thread
//! that first enters the control plane's namespace (`setns`), with its own
//! single-threaded tokio runtime. Sockets keep the namespace they were opened
//! in, and the runtime's tasks run on that thread, so nothing of it touches
//! the caller's namespace.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use tonic::transport::Channel;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::{CreateTokenRequest, GetClusterInfoRequest};

use crate::LabError;

/// Runs `f` on a new thread inside the named network namespace `ns`
/// (`/run/netns/<ns>`) and returns what it returns. Everything `f` opens
/// (sockets, a runtime's threads it starts) is in that namespace; the
/// caller's thread never changes namespace. Needs CAP_SYS_ADMIN.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    let path = Path::new("/run/netns").join(ns);
    let handle = File::open(&path)
        .map_err(|e| LabError::io(format!("opening network namespace {}", path.display()), e))?;
    let ns_owned = ns.to_string();
    thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            setns(&handle, CloneFlags::CLONE_NEWNET).map_err(|e| {
                LabError::io(format!("entering network namespace {ns_owned}"), e.into())
            })?;
            Ok(f())
        })
        .map_err(|e| LabError::io("starting a thread", e))?
        .join()
        .map_err(|_| LabError::InvalidArgument(format!("a thread in namespace {ns} panicked")))?
}

/// Connects to the control plane with `admin_conf` from inside namespace
/// `ns` and runs `call` with an Admin client, all within `timeout`.
pub(crate) fn admin_call<T, F, Fut>(
    ns: &str,
    admin_conf: &Path,
    timeout: Duration,
    what: &str,
    call: F,
) -> Result<T, LabError>
where
    T: Send + 'static,
    F: FnOnce(AdminClient<Channel>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let admin_conf: PathBuf = admin_conf.to_path_buf();
    let api = |reason: String| LabError::Api {
        what: what.to_string(),
        reason,
    };
    let result = in_netns(ns, move || -> Result<T, String> {
        let creds = weft_client::Credentials::load(&admin_conf)
            .map_err(|e| format!("reading {}: {e}", admin_conf.display()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting an async runtime: {e}"))?;
        runtime.block_on(async move {
            let work = async {
                let channel = weft_client::connect(&creds)
                    .await
                    .map_err(|e| format!("connecting to {}: {e}", creds.server))?;
                call(AdminClient::new(channel))
                    .await
                    .map_err(|s| format!("{} ({:?})", s.message(), s.code()))
            };
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| format!("no answer within {timeout:?}"))?
        })
    })?;
    result.map_err(api)
}

/// The control plane answers an Admin call: returns its version.
pub(crate) fn cluster_version(
    ns: &str,
    admin_conf: &Path,
    timeout: Duration,
) -> Result<String, LabError> {
    admin_call(
        ns,
        admin_conf,
        timeout,
        "GetClusterInfo",
        |mut admin| async move {
            let info = admin
                .get_cluster_info(GetClusterInfoRequest {})
                .await?
                .into_inner();
            Ok(info.version)
        },
    )
}

/// A join token: the token string and the CA hash to pin.
#[derive(Clone, Debug)]
pub(crate) struct JoinToken {
    pub(crate) token: String,
    pub(crate) ca_hash: String,
}

/// Creates a join token for `usages` joins, valid for an hour.
pub(crate) fn create_token(
    ns: &str,
    admin_conf: &Path,
    timeout: Duration,
    usages: u32,
    description: &str,
) -> Result<JoinToken, LabError> {
    let description = description.to_string();
    admin_call(
        ns,
        admin_conf,
        timeout,
        "CreateToken",
        move |mut admin| async move {
            let r = admin
                .create_token(CreateTokenRequest {
                    ttl_seconds: 3600,
                    usages,
                    description,
                })
                .await?
                .into_inner();
            Ok(JoinToken {
                token: r.token_string,
                ca_hash: r.ca_cert_hash,
            })
        },
    )
}
