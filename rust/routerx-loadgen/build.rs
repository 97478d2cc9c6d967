//! Generates the gRPC client code from the repository's proto (the one the Python server is
//! generated from, so the two cannot drift) and a vendored copy of the standard health proto.
//! protox parses them in Rust: no protoc needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let protos = root.join("../../protos");
    let vendored = root.join("proto");
    let fds = protox::compile(["routerx/v1/router.proto", "grpc/health/v1/health.proto"], [protos.as_path(), vendored.as_path()])?;
    tonic_prost_build::configure().build_server(false).build_transport(false).compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", protos.join("routerx/v1/router.proto").display());
    println!("cargo:rerun-if-changed={}", vendored.join("grpc/health/v1/health.proto").display());
    Ok(())
}
