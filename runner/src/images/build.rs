//! Building the sandbox images.

use std::collections::HashMap;

use super::bootstrap;
use super::engine::{BuildRequest, ImageEngine};
use super::sources::ImageSources;
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
    engine: &'a dyn ImageEngine,
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
        engine: &'a dyn ImageEngine,
        sources: &'a ImageSources,
        progress: &'a (dyn Fn(&str) + Sync),
    ) -> Self {
        ImageBuilder {
            engine,
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
        self.engine
            .exists(image)
            .await
            .map_err(|e| BuildError::Engine {
                image: image.to_owned(),
                message: e.0,
            })
    }

    /// Makes sure `debian:bookworm-slim` is present: pulls it, or, when no
    /// registry answers, creates it from Debian's packages.
    pub async fn ensure_debian(&self) -> Result<(), BuildError> {
        if self.exists(DEBIAN_IMAGE).await? {
            return Ok(());
        }
        (self.progress)(&format!("{DEBIAN_IMAGE} is not present; pulling it"));
        match self.engine.pull(DEBIAN_IMAGE).await {
            Ok(()) if self.exists(DEBIAN_IMAGE).await? => return Ok(()),
            Ok(()) => (self.progress)("the pull ended without the image"),
            Err(e) => (self.progress)(&format!("pulling {DEBIAN_IMAGE} failed: {e}")),
        }
        (self.progress)(&format!(
            "creating {DEBIAN_IMAGE} from Debian's packages instead (debootstrap --variant=minbase bookworm, then an import; about a minute)"
        ));
        bootstrap::create_debian_image(self.engine, DEBIAN_IMAGE, self.progress).await?;
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

    /// Builds a job image (and the base) unless present.
    pub async fn ensure_job_image(
        &self,
        job: &super::jobs::JobImage,
        force: bool,
    ) -> Result<Built, BuildError> {
        if !force && self.exists(&job.image).await? {
            return Ok(Built::Present(job.image.clone()));
        }
        let base = match self.ensure_base(false).await? {
            Built::Present(b) | Built::Built(b) => b,
        };
        let args = HashMap::from([("BASE".to_owned(), base)]);
        self.build(&job.dir, &job.image, args).await?;
        Ok(Built::Built(job.image.clone()))
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
        let request = BuildRequest {
            tag: image.to_owned(),
            context: self.context(dir),
            args: buildargs,
            labels: HashMap::from([(
                CONTEXT_LABEL.to_owned(),
                self.sources.content_hash(&["base", dir]),
            )]),
        };
        // The last lines of output explain a failure.
        let tail = std::sync::Mutex::new(std::collections::VecDeque::<String>::new());
        let log = |line: &str| {
            (self.progress)(&format!("  {line}"));
            let mut t = tail.lock().expect("tail lock");
            t.push_back(line.to_owned());
            if t.len() > 15 {
                t.pop_front();
            }
        };
        let built = self.engine.build(request, &log).await;
        let tail = tail.into_inner().expect("tail lock");
        built.map_err(|e| BuildError::Failed {
            image: image.to_owned(),
            message: format!("{e}{}", tail_text(&tail)),
        })?;
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
