//! The gRPC contract of an unseen domain (`proto/unseen.proto`) and its generated tonic/prost
//! code. Nothing but generated code lives here; only the gateway and the CLI use these types.

#![allow(missing_docs, clippy::all)]

/// Version 1 of the API.
pub mod v1 {
    tonic::include_proto!("unseen.v1");
}
