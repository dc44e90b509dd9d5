//! Credential vault: AES-256-GCM with a key ring; secrets bound to their row by associated data.
