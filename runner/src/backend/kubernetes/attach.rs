//! Attaching to a sandbox pod's stdin, stdout and stderr through the API
//! server (WebSocket, `v5.channel.k8s.io`), behind a small seam: an HTTP mock
//! of the API server cannot upgrade a connection, so the mock tests plug an
//! in-memory sandbox-init here instead, and the cluster tests use this.

use std::fmt;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::objects::CONTAINER;
use crate::backend::{Attachment, BackendError, Output};

/// Opens a sandbox pod's stdio.
#[async_trait::async_trait]
pub trait PodStreams: Send + Sync + fmt::Debug {
    async fn attach(&self, namespace: &str, pod: &str) -> Result<Attachment, BackendError>;
}

/// Attaches through the API server.
#[derive(Clone)]
pub struct KubeAttach {
    client: Client,
}

impl fmt::Debug for KubeAttach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeAttach").finish_non_exhaustive()
    }
}

impl KubeAttach {
    pub fn new(client: Client) -> KubeAttach {
        KubeAttach { client }
    }
}

/// Chunks read from `r` until it ends.
fn chunks<R>(r: R, wrap: fn(Bytes) -> Output) -> BoxStream<'static, Result<Output, BackendError>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    stream::unfold(r, move |mut r| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(wrap(Bytes::from(buf))), r))
            }
            Err(e) => Some((
                Err(BackendError::Call {
                    job: "-".into(),
                    action: "reading from the sandbox pod".into(),
                    message: e.to_string(),
                }),
                r,
            )),
        }
    })
    .boxed()
}

#[async_trait::async_trait]
impl PodStreams for KubeAttach {
    async fn attach(&self, namespace: &str, pod: &str) -> Result<Attachment, BackendError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = AttachParams::default()
            .container(CONTAINER)
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .tty(false);
        let mut process = api
            .attach(pod, &params)
            .await
            .map_err(|e| BackendError::Call {
                job: namespace.to_owned(),
                action: format!("attaching to pod {pod}"),
                message: e.to_string(),
            })?;
        let missing = |what: &str| BackendError::Call {
            job: namespace.to_owned(),
            action: format!("attaching to pod {pod}"),
            message: format!("the API server gave no {what} stream"),
        };
        let input = process.stdin().ok_or_else(|| missing("stdin"))?;
        let stdout = process.stdout().ok_or_else(|| missing("stdout"))?;
        let stderr = process.stderr().ok_or_else(|| missing("stderr"))?;
        let merged = stream::select(
            chunks(stdout, Output::Stdout),
            chunks(stderr, Output::Stderr),
        );
        // The attached process drives the WebSocket: it lives as long as the
        // output is read.
        let output = merged
            .map(move |item| {
                let _alive = &process;
                item
            })
            .boxed();
        Ok(Attachment {
            input: Box::pin(input),
            output,
        })
    }
}
