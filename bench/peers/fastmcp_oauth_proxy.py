"""The peer of `bench oauth`: FastMCP's OAuth proxy (`OIDCProxy`) in front of the same upstream IdP, with one
echo tool, as FastMCP's documentation sets it up. Started by the bench (`python fastmcp_oauth_proxy.py
<issuer> <port>`), never by CI; `bench/peers/requirements.txt` pins the version the bench installs."""

import sys

from fastmcp import FastMCP
from fastmcp.server.auth.oidc_proxy import OIDCProxy

issuer, port = sys.argv[1], int(sys.argv[2])
base_url = f"http://127.0.0.1:{port}"

auth = OIDCProxy(
    config_url=f"{issuer}/.well-known/openid-configuration",
    client_id="fastmcp",
    client_secret="fastmcp-secret",
    base_url=base_url,
    # oidc-provider's access tokens are opaque: the ID token is what can be verified, as with Entra v1.
    verify_id_token=True,
    # oidc-provider without resource indicators refuses a `resource` it does not know; the gateway sends none.
    forward_resource=False,
    redirect_path="/auth/callback",
    allowed_client_redirect_uris=["http://127.0.0.1:*"],
    jwt_signing_key="bench-signing-key-of-at-least-32-bytes!",
    # The scopes the gateway asks the IdP for (without them oidc-provider refuses: no `openid`).
    extra_authorize_params={"scope": "openid email profile"},
)

mcp = FastMCP("bench", auth=auth)


@mcp.tool
def echo(message: str) -> str:
    """Says the message back."""
    return message


if __name__ == "__main__":
    print(f"listening {base_url}", flush=True)
    mcp.run(transport="http", host="127.0.0.1", port=port, show_banner=False, log_level="warning")
