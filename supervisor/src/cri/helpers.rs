//! Steps and answers shared by several CRI calls.

use tonic::Status;

/// The answer of an RPC berthd does not serve yet, naming it.
pub(super) fn not_served(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by berthd yet"))
}

/// The answer of the streaming calls (Exec, Attach, PortForward) until
/// berthd runs a streaming server.
pub(super) fn streaming_not_served(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc}: berthd has no CRI streaming server yet (exec, attach and port-forward); \
         ExecSync works for commands that need no stream"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_answers_name_the_call() {
        let s = not_served("CheckpointContainer");
        assert_eq!(s.code(), tonic::Code::Unimplemented);
        assert!(s.message().contains("CheckpointContainer"));
        let s = streaming_not_served("Exec");
        assert_eq!(s.code(), tonic::Code::Unimplemented);
        assert!(s.message().starts_with("Exec:"));
    }
}
