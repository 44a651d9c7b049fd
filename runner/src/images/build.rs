//! Building the sandbox images.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, CreateImageOptionsBuilder};
use futures_util::StreamExt;

use super::bootstrap;
use super::sources::ImageSources;
use crate::engine::docker::describe;
use crate::language::{IMAGE_REPOSITORY, Language};

/// The Debian image every sandbox image starts from.
pub const DEBIAN_IMAGE: &str = "debian:bookworm-slim";
/// Label with the hash of the files an image was built from.
pub const CONTEXT_LABEL: &str = "io.runner.sandbox.context";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot reach the Docker engine to build {image}: {message}")]
    Engine { image: String, message: String },
    #[error("building {image} failed: {message}")]
    Failed { image: String, message: String },
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
}

/// Builds images, reporting progress lines to `progress`.
pub struct ImageBuilder<'a> {
    docker: &'a Docker,
    sources: &'a ImageSources,
    progress: &'a (dyn Fn(&str) + Sync),
}

impl std::fmt::Debug for ImageBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageBuilder")
            .field("sources", &self.sources.origin())
            .finish_non_exhaustive()
    }
}

/// What building one image did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Built {
    /// The image was already present.
    Present(String),
    /// The image was built now.
    Built(String),
}

impl<'a> ImageBuilder<'a> {
    pub fn new(
        docker: &'a Docker,
        sources: &'a ImageSources,
        progress: &'a (dyn Fn(&str) + Sync),
    ) -> Self {
        ImageBuilder {
            docker,
            sources,
            progress,
        }
    }

    /// Reference of the base image for these sources.
    pub fn base_image(&self) -> String {
        format!(
            "{IMAGE_REPOSITORY}/base:{}",
            self.sources.content_hash(&["base"])
        )
    }

    async fn exists(&self, image: &str) -> Result<bool, BuildError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(BuildError::Engine {
                image: image.to_owned(),
                message: describe(&e),
            }),
        }
    }

    /// Makes sure `debian:bookworm-slim` is present: pulls it, or, when no
    /// registry answers, creates it from Debian's packages.
    pub async fn ensure_debian(&self) -> Result<(), BuildError> {
        if self.exists(DEBIAN_IMAGE).await? {
            return Ok(());
        }
        (self.progress)(&format!("{DEBIAN_IMAGE} is not present; pulling it"));
        let opts = CreateImageOptionsBuilder::default()
            .from_image(DEBIAN_IMAGE)
            .build();
        let mut pull = self.docker.create_image(Some(opts), None, None);
        let mut pull_error = None;
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                pull_error = Some(describe(&e));
                break;
            }
        }
        match pull_error {
            None if self.exists(DEBIAN_IMAGE).await? => return Ok(()),
            None => (self.progress)("the pull ended without the image"),
            Some(e) => (self.progress)(&format!("pulling {DEBIAN_IMAGE} failed: {e}")),
        }
        (self.progress)(&format!(
            "creating {DEBIAN_IMAGE} from Debian's packages instead (debootstrap --variant=minbase bookworm, then an import; about a minute)"
        ));
        bootstrap::create_debian_image(self.docker, DEBIAN_IMAGE, self.progress).await?;
        Ok(())
    }

    /// Builds the base image unless present.
    pub async fn ensure_base(&self, force: bool) -> Result<Built, BuildError> {
        let image = self.base_image();
        if !force && self.exists(&image).await? {
            return Ok(Built::Present(image));
        }
        self.ensure_debian().await?;
        let args = HashMap::from([("DEBIAN_IMAGE".to_owned(), DEBIAN_IMAGE.to_owned())]);
        self.build("base", &image, args).await?;
        Ok(Built::Built(image))
    }

    /// Builds a language's image (and the base) unless present.
    pub async fn ensure_language(&self, lang: &Language, force: bool) -> Result<Built, BuildError> {
        if !force && self.exists(&lang.image).await? {
            return Ok(Built::Present(lang.image.clone()));
        }
        let base = match self.ensure_base(false).await? {
            Built::Present(b) | Built::Built(b) => b,
        };
        let args = HashMap::from([("BASE".to_owned(), base)]);
        self.build(&lang.dir, &lang.image, args).await?;
        Ok(Built::Built(lang.image.clone()))
    }

    async fn build(
        &self,
        dir: &str,
        image: &str,
        buildargs: HashMap<String, String>,
    ) -> Result<(), BuildError> {
        (self.progress)(&format!(
            "building {image} from {}/{dir}",
            self.sources.origin()
        ));
        let context = self.context(dir);
        let hash = self.sources.content_hash(&["base", dir]);
        let opts = BuildImageOptions {
            t: Some(image.to_owned()),
            rm: true,
            forcerm: true,
            buildargs: Some(buildargs),
            labels: Some(HashMap::from([(CONTEXT_LABEL.to_owned(), hash)])),
            ..Default::default()
        };
        let mut stream =
            self.docker
                .build_image(opts, None, Some(bollard::body_full(context.into())));
        // The last lines of output explain a failure.
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| BuildError::Failed {
                image: image.to_owned(),
                message: format!("{}{}", describe(&e), tail_text(&tail)),
            })?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(BuildError::Failed {
                    image: image.to_owned(),
                    message: format!("{err}{}", tail_text(&tail)),
                });
            }
            if let Some(s) = info.stream {
                for line in s.lines().filter(|l| !l.trim().is_empty()) {
                    (self.progress)(&format!("  {line}"));
                    tail.push_back(line.to_owned());
                    if tail.len() > 15 {
                        tail.pop_front();
                    }
                }
            }
        }
        if !self.exists(image).await? {
            return Err(BuildError::Failed {
                image: image.to_owned(),
                message: format!("the build ended without the image{}", tail_text(&tail)),
            });
        }
        Ok(())
    }

    /// The build context: the image's directory as a tar archive.
    fn context(&self, dir: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in self.sources.dir(dir) {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(if name.ends_with(".sh") { 0o755 } else { 0o644 });
            h.set_mtime(0);
            builder
                .append_data(&mut h, name, bytes)
                .expect("appending to an in-memory archive");
        }
        builder
            .into_inner()
            .expect("finishing an in-memory archive")
    }
}

fn tail_text(tail: &std::collections::VecDeque<String>) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
    format!("\nlast build output:\n  {}", lines.join("\n  "))
}
