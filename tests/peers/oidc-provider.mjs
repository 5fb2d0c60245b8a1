// The upstream IdP of the integration tests: the certified `oidc-provider`, configured like an enterprise
// IdP without dynamic registration. Started by the test harness:
//   node oidc-provider.mjs <port> <config.json>
// config.json: { "clients": [{client_id, client_secret, redirect_uris}], "users": {"<login>": {
//   "password": "...", "sub": "...", "amr": ["pwd"|"mfa"], "claims": {...} }} }
// It prints "listening <issuer>" once it accepts connections. The login page is a plain HTML form
// (username, password) posted to /interaction/<uid>/login, so a test can log in without a browser.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const config = JSON.parse(readFileSync(process.argv[3], 'utf8'));
const issuer = `http://127.0.0.1:${port}`;
const users = config.users;
const bySub = Object.fromEntries(Object.values(users).map((u) => [u.sub, u]));
const extraClaims = ['name', 'email', 'roles', 'appRoles', 'app_roles', 'groups', 'wids', 'tid', 'oid',
  '_claim_names', '_claim_sources', 'hd'];

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    ...c,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  pkce: { required: () => true },
  features: { registration: { enabled: false }, devInteractions: { enabled: false } },
  conformIdTokenClaims: false,
  claims: { openid: ['sub', 'amr', 'acr', 'auth_time', ...extraClaims], email: ['email'], profile: ['name'] },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  issueRefreshToken: () => true,
  async findAccount(ctx, sub) {
    const user = bySub[sub];
    if (!user) return undefined;
    return { accountId: sub, async claims() { return { sub, ...user.claims }; } };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['test-only-cookie-key'] },
  ttl: { AccessToken: 600, IdToken: 600, Grant: 600, Interaction: 600, Session: 600, AuthorizationCode: 60 },
});
provider.proxy = false;

const readBody = (req) => new Promise((resolve) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => resolve(new URLSearchParams(body)));
});

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const match = /^\/interaction\/([^/?]+)(\/login)?/.exec(req.url);
  if (!match) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (!match[2]) {
      res.setHeader('content-type', 'text/html');
      return res.end(`<form method="post" action="/interaction/${details.uid}/login">
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
server.listen(port, '127.0.0.1', () => console.log(`listening ${issuer}`));
