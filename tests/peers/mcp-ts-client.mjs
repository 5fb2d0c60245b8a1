// The official TypeScript SDK's MCP client (`@modelcontextprotocol/sdk`, its `Client`, streamable HTTP
// transport and OAuth client provider) against a gateway's MCP endpoint, authorizing without a browser:
//   node mcp-ts-client.mjs <mcp-url> <username> <password>
// The SDK does discovery, registration and PKCE itself; this script plays the person: it follows the
// authorization URL the SDK hands it, approves the gateway's consent page, fills the upstream IdP's login
// form, and gives the code back to the SDK. Then: a call, a refresh, a revocation, a call refused.
// It prints one JSON line per step and exits non-zero when a step fails.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';

const [mcpUrl, username, password] = process.argv.slice(2);
const gateway = new URL(mcpUrl).origin;
const REDIRECT = 'http://127.0.0.1:33419/callback';
const say = (step, detail = {}) => console.log(JSON.stringify({ step, ...detail }));

// Cookies per origin, as a browser would keep them for these hosts.
const jar = new Map();
function remember(url, response) {
  const origin = new URL(url).origin;
  const cookies = jar.get(origin) ?? new Map();
  for (const set of response.headers.getSetCookie()) {
    const [pair] = set.split(';');
    const at = pair.indexOf('=');
    cookies.set(pair.slice(0, at), pair.slice(at + 1));
  }
  jar.set(origin, cookies);
}
function cookieHeader(url) {
  const cookies = jar.get(new URL(url).origin) ?? new Map();
  return [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
}
async function request(url, init = {}) {
  const headers = { ...(init.headers ?? {}), cookie: cookieHeader(url) };
  const response = await fetch(url, { ...init, headers, redirect: 'manual' });
  remember(url, response);
  return response;
}
const hidden = (html, name) => {
  const match = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!match) throw new Error(`no ${name} on the page`);
  return match[1];
};

let authorizations = 0;
// The person's part, from the authorization URL to the code at the client's redirect URI.
async function authorize(url) {
  authorizations += 1;
  if (authorizations > 1) throw new Error('asked to authorize again');
  const page = await request(url);
  const html = await page.text();
  if (page.status !== 200) throw new Error(`consent page: ${page.status} ${html}`);
  const idp = html.match(/name="idp" value="([^"]*)"/)[1];
  const form = new URLSearchParams({ transaction: hidden(html, 'transaction'), csrf: hidden(html, 'csrf'), idp });
  let response = await request(`${gateway}/consent`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' },
    body: form.toString(),
  });
  for (let hop = 0; hop < 15; hop += 1) {
    const location = response.headers.get('location');
    if (!location) throw new Error(`no redirect: ${response.status} ${await response.text()}`);
    const next = new URL(location, response.url || gateway).toString();
    if (next.startsWith(REDIRECT)) {
      const answer = new URL(next);
      if (answer.searchParams.get('iss') !== gateway) throw new Error(`iss ${answer.searchParams.get('iss')}`);
      return answer.searchParams.get('code');
    }
    if (next.includes('/interaction/') && !next.endsWith('/login')) {
      const login = await request(next);
      if (login.status !== 200) throw new Error(`login page: ${login.status}`);
      response = await request(`${next}/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ username, password }).toString(),
      });
      continue;
    }
    response = await request(next);
  }
  throw new Error('too many redirects');
}

let client = undefined;
let tokens = undefined;
let verifier = undefined;
let code = undefined;
const provider = {
  get redirectUrl() { return REDIRECT; },
  get clientMetadata() {
    return {
      redirect_uris: [REDIRECT], client_name: 'TypeScript SDK client', token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    };
  },
  clientInformation: () => client,
  saveClientInformation: (information) => { client = information; },
  tokens: () => tokens,
  saveTokens: (saved) => { tokens = saved; },
  redirectToAuthorization: async (url) => { code = await authorize(url.toString()); },
  saveCodeVerifier: (saved) => { verifier = saved; },
  codeVerifier: () => verifier,
};

const connect = async () => {
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  const mcp = new Client({ name: 'ts-sdk-interop', version: '1.0.0' });
  await mcp.connect(transport);
  return { mcp, transport };
};

try {
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  try {
    await new Client({ name: 'ts-sdk-interop', version: '1.0.0' }).connect(first);
    throw new Error('the endpoint answered without authorization');
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  say('registered', { client_id: client?.client_id, auth_method: client?.token_endpoint_auth_method });
  await first.finishAuth(code);
  say('authorized', { scope: tokens?.scope, has_refresh_token: Boolean(tokens?.refresh_token) });
  const { mcp, transport } = await connect();
  const listed = await mcp.listTools();
  const echoed = await mcp.callTool({ name: 'echo', arguments: { message: 'from the typescript sdk' } });
  say('called', { tools: listed.tools.length, echo: echoed.content[0].text });
  try {
    await mcp.callTool({ name: 'get-env', arguments: {} });
    say('refused', { refused: false });
  } catch (error) {
    say('refused', { refused: true, code: error?.code ?? null });
  }
  let progress = 0;
  const long = await mcp.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
    undefined,
    { onprogress: () => { progress += 1; } },
  );
  say('streamed', { progress, text: long.content[0].text });
  const before = tokens.access_token;
  const refreshed = await auth(provider, { serverUrl: mcpUrl });
  say('refreshed', { result: refreshed, new_access_token: tokens.access_token !== before });
  await mcp.ping();
  await transport.terminateSession();
  say('ended', { session: transport.sessionId ?? null });
  const revoked = await fetch(`${gateway}/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: tokens.refresh_token, client_id: client.client_id }).toString(),
  });
  say('revoked', { status: revoked.status });
  try {
    await mcp.listTools();
    say('after_revocation', { refused: false });
  } catch (error) {
    say('after_revocation', { refused: true, error: String(error).slice(0, 200) });
  }
  process.exit(0);
} catch (error) {
  say('failed', { error: String(error?.stack ?? error).slice(0, 2000) });
  process.exit(1);
}
