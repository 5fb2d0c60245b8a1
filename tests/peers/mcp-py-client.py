"""The official Python SDK's MCP client (PyPI `mcp`: `Client`, the streamable HTTP transport and
`OAuthClientProvider`) against a gateway's MCP endpoint, authorizing without a browser:

    python mcp-py-client.py <mcp-url> <username> <password>

The SDK does discovery, registration and PKCE itself; this script plays the person: it follows the
authorization URL the SDK hands it, approves the gateway's consent page, fills the upstream IdP's login
form, and gives the code back to the SDK. Then: a call, a refresh, a revocation, a call refused. It prints
one JSON line per step and exits non-zero when a step fails.
"""

import asyncio
import json
import re
import sys
import traceback
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2 as httpx
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

MCP_URL, USERNAME, PASSWORD = sys.argv[1:4]
GATEWAY = "{0.scheme}://{0.netloc}".format(urlparse(MCP_URL))
REDIRECT = "http://127.0.0.1:33420/callback"


def say(step, **detail):
    print(json.dumps({"step": step, **detail}), flush=True)


class Memory:
    """What the SDK keeps between calls: the client's registration and its tokens."""

    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


class Person:
    """The browser part, from the authorization URL to the code at the client's redirect URI."""

    def __init__(self):
        self.answer = None
        self.authorizations = 0

    async def redirect(self, url):
        self.authorizations += 1
        if self.authorizations > 1:
            raise RuntimeError("asked to authorize again")
        # One cookie jar per host:port, as a browser keeps them for these hosts.
        async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
            page = await browser.get(url)
            if page.status_code != 200:
                raise RuntimeError(f"consent page: {page.status_code} {page.text}")
            field = lambda name: re.search(f'name="{name}" value="([^"]*)"', page.text).group(1)
            form = {"transaction": field("transaction"), "csrf": field("csrf"), "idp": field("idp")}
            response = await browser.post(f"{GATEWAY}/consent", data=form, headers={"sec-fetch-site": "same-origin"})
            for _ in range(15):
                location = response.headers.get("location")
                if location is None:
                    raise RuntimeError(f"no redirect: {response.status_code} {response.text}")
                following = urljoin(str(response.url), location)
                if following.startswith(REDIRECT):
                    query = parse_qs(urlparse(following).query)
                    self.answer = AuthorizationCodeResult(
                        code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
                    )
                    return
                if "/interaction/" in following and not following.endswith("/login"):
                    login = await browser.get(following)
                    if login.status_code != 200:
                        raise RuntimeError(f"login page: {login.status_code}")
                    response = await browser.post(f"{following}/login", data={"username": USERNAME, "password": PASSWORD})
                    continue
                response = await browser.get(following)
            raise RuntimeError("too many redirects")

    async def callback(self):
        return self.answer


def provider(memory, person):
    metadata = OAuthClientMetadata(
        redirect_uris=[REDIRECT],
        client_name="Python SDK client",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    return OAuthClientProvider(
        server_url=MCP_URL,
        client_metadata=metadata,
        storage=memory,
        redirect_handler=person.redirect,
        callback_handler=person.callback,
    )


async def tools_with(memory, person, expired=False):
    auth = provider(memory, person)
    if expired:
        # As if the access token's lifetime had run out (the SDK knows it only from a token it received).
        auth.context.token_expiry_time = 1.0
    async with httpx.AsyncClient(auth=auth, timeout=30) as http:
        async with Client(streamable_http_client(MCP_URL, http_client=http)) as client:
            listed = await client.list_tools()
            echoed = await client.call_tool("echo", {"message": "from the python sdk"})
            if not expired:
                try:
                    await client.call_tool("get-env", {})
                    say("refused", refused=False)
                except Exception as error:  # the SDK raises the JSON-RPC error
                    say("refused", refused=True, code=getattr(getattr(error, "error", None), "code", None))
                progress = []

                async def on_progress(done, total, message):
                    progress.append(done)

                long = await client.call_tool(
                    "trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
                )
                say("streamed", progress=len(progress), text=long.content[0].text)
            return listed, echoed


async def main():
    memory, person = Memory(), Person()
    listed, echoed = await tools_with(memory, person)
    say("registered", client_id=memory.client.client_id, auth_method=memory.client.token_endpoint_auth_method)
    say("authorized", scope=memory.tokens.scope, has_refresh_token=memory.tokens.refresh_token is not None)
    say("called", tools=len(listed.tools), echo=echoed.content[0].text)
    # The access token counted as expired: a new connection refreshes it (rotating the refresh token).
    before = memory.tokens.refresh_token
    await tools_with(memory, person, expired=True)
    say("refreshed", new_refresh_token=memory.tokens.refresh_token not in (None, before))
    async with httpx.AsyncClient(timeout=30) as http:
        revoked = await http.post(
            f"{GATEWAY}/revoke", data={"token": memory.tokens.refresh_token, "client_id": memory.client.client_id}
        )
    say("revoked", status=revoked.status_code)
    try:
        await tools_with(memory, person)
        say("after_revocation", refused=False)
    except BaseException as error:  # the SDK raises through task groups
        say("after_revocation", refused=True, error=repr(error)[:200])


try:
    asyncio.run(main())
except BaseException:
    say("failed", error=traceback.format_exc()[-2000:])
    sys.exit(1)
