//! The seam image building goes through: the few engine operations it needs
//! (is an image there, pull, build from a context, import a root
//! filesystem), on Docker through `pipeline`'s connection code — separate
//! from the job backend, which runs sandboxes and never builds.

use std::collections::HashMap;
use std::pin::Pin;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, CreateImageOptionsBuilder};
use futures_util::{Stream, StreamExt};

/// An image engine failure, in a sentence.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EngineFailure(pub String);

/// Bytes of a stream the engine reads (an import).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>;

/// What a build asks for.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub tag: String,
    /// The build context: a tar archive holding the Dockerfile.
    pub context: Vec<u8>,
    pub args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
}

#[async_trait::async_trait]
pub trait ImageEngine: Send + Sync {
    /// Whether `image` is present.
    async fn exists(&self, image: &str) -> Result<bool, EngineFailure>;
    /// Pulls `image` from its registry.
    async fn pull(&self, image: &str) -> Result<(), EngineFailure>;
    /// Builds an image; each line of build output goes to `progress`.
    async fn build(
        &self,
        request: BuildRequest,
        progress: &(dyn for<'l> Fn(&'l str) + Sync),
    ) -> Result<(), EngineFailure>;
    /// Imports a root filesystem (a tar stream) as `image`.
    async fn import(&self, image: &str, rootfs: ByteStream) -> Result<(), EngineFailure>;
}

/// [`ImageEngine`] on the Docker Engine API.
#[derive(Debug, Clone)]
pub struct DockerImages {
    docker: Docker,
}

impl DockerImages {
    /// Connects to `DOCKER_HOST` or the local socket.
    pub async fn connect() -> Result<DockerImages, EngineFailure> {
        let docker = pipeline::engine::connect()
            .await
            .map_err(|e| EngineFailure(e.to_string()))?;
        Ok(DockerImages { docker })
    }
}

fn describe(e: &bollard::errors::Error) -> EngineFailure {
    EngineFailure(pipeline::engine::describe(e))
}

#[async_trait::async_trait]
impl ImageEngine for DockerImages {
    async fn exists(&self, image: &str) -> Result<bool, EngineFailure> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if pipeline::engine::is_not_found(&e) => Ok(false),
            Err(e) => Err(describe(&e)),
        }
    }

    async fn pull(&self, image: &str) -> Result<(), EngineFailure> {
        let opts = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut pull = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = pull.next().await {
            item.map_err(|e| describe(&e))?;
        }
        Ok(())
    }

    async fn build(
        &self,
        request: BuildRequest,
        progress: &(dyn for<'l> Fn(&'l str) + Sync),
    ) -> Result<(), EngineFailure> {
        let opts = BuildImageOptions {
            t: Some(request.tag),
            rm: true,
            forcerm: true,
            buildargs: Some(request.args),
            labels: Some(request.labels),
            ..Default::default()
        };
        let mut stream =
            self.docker
                .build_image(opts, None, Some(bollard::body_full(request.context.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| describe(&e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineFailure(err));
            }
            if let Some(s) = info.stream {
                for line in s.lines().filter(|l| !l.trim().is_empty()) {
                    progress(line);
                }
            }
        }
        Ok(())
    }

    async fn import(&self, image: &str, rootfs: ByteStream) -> Result<(), EngineFailure> {
        let (repo, tag) = image.split_once(':').unwrap_or((image, "latest"));
        let opts = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut import =
            self.docker
                .create_image(Some(opts), Some(bollard::body_try_stream(rootfs)), None);
        while let Some(item) = import.next().await {
            item.map_err(|e| describe(&e))?;
        }
        Ok(())
    }
}
