//! The Kubernetes target.

mod target;

pub use target::KubernetesTarget;
