"""Generated from protos/routerx/v1/router.proto by routerx.server.gen_protos (grpcio-tools 1.85.1); do not edit."""
