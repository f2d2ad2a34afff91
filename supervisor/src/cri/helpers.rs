//! Steps and answers shared by several CRI calls.

use berth_api::ErrorKind;
use tonic::Status;

/// The status for an error of `kind` (the one map: berth-api's).
pub(super) fn fail(kind: ErrorKind, e: impl std::fmt::Display) -> Status {
    berth_api::errdefs::to_status(kind, e.to_string())
}

/// A new object id: 64 hex digits, as containerd's CRI makes them.
pub(super) fn new_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Now, in ns since the epoch.
pub(super) fn now_ns() -> i64 {
    to_ns(std::time::SystemTime::now())
}

/// A time in ns since the epoch (0 for times before it).
pub(super) fn to_ns(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl super::Cri {
    /// Writes the metadata extension `extension` of record `rec` (a pod's
    /// or a container's); a record that is gone is fine.
    pub(super) async fn save_extension(
        &self,
        rec: crate::store::containers::Container,
        extension: &str,
    ) -> Result<(), Status> {
        let paths = [format!("extensions.{extension}")];
        let res = self
            .inner
            .deps
            .containers
            .update(super::NAMESPACE, rec, &paths)
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fail(e.kind(), e)),
        }
    }
}

/// Whether `labels` has every pair of `selector`.
pub(super) fn labels_match(
    selector: &std::collections::HashMap<String, String>,
    labels: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// How long the caller waits (its `grpc-timeout`), less a margin so that
/// berthd answers DeadlineExceeded before the transport's own timer
/// answers Cancelled (tonic's code for an expired `grpc-timeout`, where
/// gRPC and the CRI's tests want DeadlineExceeded).
pub(super) fn caller_deadline(meta: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    let v = meta.get("grpc-timeout")?.to_str().ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    let nanos = match unit {
        "H" => n.checked_mul(3_600_000_000_000)?,
        "M" => n.checked_mul(60_000_000_000)?,
        "S" => n.checked_mul(1_000_000_000)?,
        "m" => n.checked_mul(1_000_000)?,
        "u" => n.checked_mul(1_000)?,
        "n" => n,
        _ => return None,
    };
    Some(std::time::Duration::from_nanos(nanos - nanos / 10))
}

/// `call`, ended with DeadlineExceeded once `deadline` (if any) passes.
pub(super) async fn within<T>(
    deadline: Option<std::time::Duration>,
    what: &str,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match deadline {
        None => call.await,
        Some(d) => tokio::time::timeout(d, call).await.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "{what}: the caller's deadline passed"
            )))
        }),
    }
}

/// The answer of an RPC berthd does not serve yet, naming it.
pub(super) fn not_served(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by berthd yet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_deadlines_from_grpc_timeout() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(caller_deadline(&m), None);
        m.insert("grpc-timeout", "100m".parse().unwrap());
        assert_eq!(
            caller_deadline(&m),
            Some(std::time::Duration::from_millis(90))
        );
        m.insert("grpc-timeout", "2S".parse().unwrap());
        assert_eq!(
            caller_deadline(&m),
            Some(std::time::Duration::from_millis(1800))
        );
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(caller_deadline(&m), None);
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_deadline_exceeded() {
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Ok::<_, Status>(())
        };
        let e = within(
            Some(std::time::Duration::from_millis(10)),
            "PullImage",
            slow,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(
            within(None, "x", async { Ok::<_, Status>(1) })
                .await
                .unwrap(),
            1
        );
    }

    #[test]
    fn unimplemented_answers_name_the_call() {
        let s = not_served("CheckpointContainer");
        assert_eq!(s.code(), tonic::Code::Unimplemented);
        assert!(s.message().contains("CheckpointContainer"));
    }
}
