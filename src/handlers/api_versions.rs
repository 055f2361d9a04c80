//! ApiVersions: the advertised table, from `protocol::SUPPORTED` only.

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::Ctx;
use crate::protocol::{api_version_list, error, valid_client_software, ResponseFrame};

/// Answers with the supported-version table (INVALID_REQUEST for a malformed v3+ client name).
pub(super) fn handle(ctx: &Ctx, req: ApiVersionsRequest) -> ResponseFrame {
    let mut resp = ApiVersionsResponse::default();
    if ctx.version >= 3
        && !(valid_client_software(&req.client_software_name)
            && valid_client_software(&req.client_software_version))
    {
        resp.error_code = error::INVALID_REQUEST;
        return ctx.respond(&resp);
    }
    resp.api_keys = api_version_list();
    ctx.respond(&resp)
}
