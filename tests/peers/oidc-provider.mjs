// The upstream IdP of the integration tests: the certified `oidc-provider`, configured like an enterprise
// IdP without dynamic registration. Started by the test harness:
//   node oidc-provider.mjs <port> <config.json>
// config.json: { "clients": [{client_id, client_secret, redirect_uris, token_endpoint_auth_method?}],
//   "users": {"<login>": { "password": "...", "sub": "...", "amr": ["pwd"|"mfa"], "claims": {...},
//   "github": {id, login, name, email, orgs: [...], teams: ["org/slug"]} }},
//   "tenant": "<guid>", "access_token_ttl": <seconds, default 600> }
// It prints "listening <origin>" once it accepts connections. The login page is a plain HTML form
// (username, password) posted to <prefix>/interaction/<uid>/login, so a test can log in without a browser.
//
// Two shapes of real IdPs, served by the same certified provider:
// - "tenant" set: Entra ID's multi-tenant shape. The provider's issuer is <origin>/<tenant>/v2.0 (it is
//   mounted there), and <origin>/organizations/v2.0/.well-known/openid-configuration answers its metadata
//   with the issuer templated as <origin>/{tenantid}/v2.0, as Entra's /organizations endpoint does.
// - GitHub's OAuth app endpoints: /login/oauth/authorize and /login/oauth/access_token are the provider's
//   authorization and token endpoints (plain OAuth 2.0, no openid scope), and /api/v3/user, /user/orgs and
//   /user/teams answer for a token the provider issued, in GitHub's JSON shapes (GitHub Enterprise paths).
import http from 'node:http';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const config = JSON.parse(readFileSync(process.argv[3], 'utf8'));
const origin = `http://127.0.0.1:${port}`;
const prefix = config.tenant ? `/${config.tenant}/v2.0` : '';
const issuer = `${origin}${prefix}`;
const users = config.users;
const bySub = Object.fromEntries(Object.values(users).map((u) => [u.sub, u]));
const extraClaims = ['name', 'email', 'roles', 'appRoles', 'app_roles', 'groups', 'wids', 'tid', 'oid',
  '_claim_names', '_claim_sources', 'hd'];

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    ...c,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  })),
  pkce: { required: () => true },
  features: { registration: { enabled: false }, devInteractions: { enabled: false } },
  conformIdTokenClaims: false,
  claims: { openid: ['sub', 'amr', 'acr', 'auth_time', ...extraClaims], email: ['email'], profile: ['name'] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'read:user', 'user:email', 'read:org'],
  issueRefreshToken: () => true,
  async findAccount(ctx, sub) {
    const user = bySub[sub];
    if (!user) return undefined;
    return { accountId: sub, async claims() { return { sub, ...user.claims }; } };
  },
  interactions: { url: (ctx, interaction) => `${prefix}/interaction/${interaction.uid}` },
  cookies: { keys: ['test-only-cookie-key'] },
  ttl: { AccessToken: config.access_token_ttl ?? 600, IdToken: 600, Grant: 600, Interaction: 600, Session: 600, AuthorizationCode: 60 },
});
provider.proxy = false;

const readBody = (req) => new Promise((resolve) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => resolve(new URLSearchParams(body)));
});

const json = (res, status, body) => {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
};

// GitHub's user API for a token the provider issued.
const github = async (req, res) => {
  const token = /^(?:Bearer|token) (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
  const found = token && await provider.AccessToken.find(token);
  const user = found && bySub[found.accountId]?.github;
  if (!user) return json(res, 401, { message: 'Bad credentials' });
  const path = req.url.replace(/^\/api\/v3/, '').split('?')[0];
  if (path === '/user') return json(res, 200, { id: user.id, login: user.login, name: user.name ?? null, email: user.email ?? null });
  if (path === '/user/orgs') return json(res, 200, (user.orgs ?? []).map((login) => ({ login })));
  if (path === '/user/teams') {
    return json(res, 200, (user.teams ?? []).map((t) => ({ slug: t.split('/')[1], organization: { login: t.split('/')[0] } })));
  }
  return json(res, 404, { message: 'Not Found' });
};

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  if (req.url.startsWith('/api/v3/')) return github(req, res);
  if (req.url.startsWith('/login/oauth/authorize')) req.url = req.url.replace('/login/oauth/authorize', `${prefix}/auth`);
  if (req.url.startsWith('/login/oauth/access_token')) req.url = `${prefix}/token`;
  if (prefix && req.url.startsWith('/organizations/v2.0/.well-known/openid-configuration')) {
    const metadata = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
    return json(res, 200, { ...metadata, issuer: `${origin}/{tenantid}/v2.0` });
  }
  if (prefix) {
    if (!req.url.startsWith(prefix)) return json(res, 404, { error: 'not found' });
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length) || '/';
  }
  const match = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url);
  if (!match) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (!match[2]) {
      res.setHeader('content-type', 'text/html');
      return res.end(`<form method="post" action="${prefix}/interaction/${details.uid}/login">
        <input name="username"><input name="password" type="password"><button>Sign in</button></form>`);
    }
    const form = await readBody(req);
    const user = users[form.get('username')];
    if (!user || user.password !== form.get('password')) {
      res.statusCode = 401;
      return res.end('wrong username or password');
    }
    const grant = new provider.Grant({ accountId: user.sub, clientId: details.params.client_id });
    grant.addOIDCScope(String(details.params.scope));
    grant.addOIDCClaims(['sub', ...extraClaims]);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: user.sub, amr: user.amr ?? ['pwd'] },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  } catch (error) {
    res.statusCode = 400;
    res.end(String(error));
  }
});
server.listen(port, '127.0.0.1', () => console.log(`listening ${origin}`));
