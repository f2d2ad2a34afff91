//! containerd's event payloads (`containerd.events.*`, generated) and the
//! [`Event`] trait that gives each its type URL and topic, so berthd and
//! the shim publish them with one spelling.

use prost_types::Any;

pub use crate::generated::containerd::events::*;
use crate::services::images::v1 as images;

/// A payload published on the event bus, with the topic containerd uses
/// for it and the type URL its clients decode it by.
pub trait Event: prost::Message + Sized {
    /// The payload's type URL, e.g. `containerd.events.TaskExit`.
    const TYPE_URL: &'static str;
    /// The topic it is published under, e.g. `/tasks/exit`.
    const TOPIC: &'static str;

    /// The payload as an `Any`.
    fn to_any(&self) -> Any {
        Any {
            type_url: Self::TYPE_URL.to_string(),
            value: self.encode_to_vec(),
        }
    }
}

macro_rules! events {
    ($($ty:ty => $url:literal, $topic:literal;)*) => {
        $(impl Event for $ty {
            const TYPE_URL: &'static str = $url;
            const TOPIC: &'static str = $topic;
        })*
    };
}

events! {
    ContainerCreate => "containerd.events.ContainerCreate", "/containers/create";
    ContainerUpdate => "containerd.events.ContainerUpdate", "/containers/update";
    ContainerDelete => "containerd.events.ContainerDelete", "/containers/delete";
    ContentDelete => "containerd.events.ContentDelete", "/content/delete";
    NamespaceCreate => "containerd.events.NamespaceCreate", "/namespaces/create";
    NamespaceUpdate => "containerd.events.NamespaceUpdate", "/namespaces/update";
    NamespaceDelete => "containerd.events.NamespaceDelete", "/namespaces/delete";
    SnapshotPrepare => "containerd.events.SnapshotPrepare", "/snapshot/prepare";
    SnapshotCommit => "containerd.events.SnapshotCommit", "/snapshot/commit";
    SnapshotRemove => "containerd.events.SnapshotRemove", "/snapshot/remove";
    TaskCreate => "containerd.events.TaskCreate", "/tasks/create";
    TaskStart => "containerd.events.TaskStart", "/tasks/start";
    TaskDelete => "containerd.events.TaskDelete", "/tasks/delete";
    TaskExit => "containerd.events.TaskExit", "/tasks/exit";
    TaskOom => "containerd.events.TaskOOM", "/tasks/oom";
    TaskExecAdded => "containerd.events.TaskExecAdded", "/tasks/exec-added";
    TaskExecStarted => "containerd.events.TaskExecStarted", "/tasks/exec-started";
    TaskPaused => "containerd.events.TaskPaused", "/tasks/paused";
    TaskResumed => "containerd.events.TaskResumed", "/tasks/resumed";
    TaskCheckpointed => "containerd.events.TaskCheckpointed", "/tasks/checkpointed";
    // containerd 1.6 publishes image events with the images service's own
    // message types.
    images::ImageCreate => "containerd.services.images.v1.ImageCreate", "/images/create";
    images::ImageUpdate => "containerd.services.images.v1.ImageUpdate", "/images/update";
    images::ImageDelete => "containerd.services.images.v1.ImageDelete", "/images/delete";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_follow_the_message_names() {
        assert_eq!(TaskExit::TYPE_URL, crate::type_urls::event("TaskExit"));
        assert_eq!(TaskOom::TYPE_URL, crate::type_urls::event("TaskOOM"));
        let any = TaskStart {
            container_id: "c".into(),
            pid: 3,
        }
        .to_any();
        assert_eq!(any.type_url, "containerd.events.TaskStart");
        assert_eq!(
            <TaskStart as prost::Message>::decode(any.value.as_slice())
                .unwrap()
                .pid,
            3
        );
        assert_eq!(images::ImageDelete::TOPIC, "/images/delete");
    }
}
