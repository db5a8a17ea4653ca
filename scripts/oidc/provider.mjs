// A local OpenID provider for `just up` and the tests: the npm package oidc-provider (a
// conformant implementation), with one client (order-svc) and two demo users:
//   support / support  roles [support]  (search and personal data)
//   viewer  / viewer   roles [viewer]   (lookups, masked)
// Not for production: the keys are made at start and nothing is kept.
//
// Settings (environment): OIDC_PORT (8081), OIDC_ISSUER (http://127.0.0.1:$OIDC_PORT),
// OIDC_REDIRECT_URI (http://127.0.0.1:8080/auth/callback; the client is a loopback "native"
// one, so the same path on any port is accepted), OIDC_CLIENT_SECRET, OIDC_TOKEN_TTL (s).
import crypto from 'node:crypto';
import http from 'node:http';
import { Provider } from 'oidc-provider';

const port = Number(process.env.OIDC_PORT ?? 8081);
const issuer = process.env.OIDC_ISSUER ?? `http://127.0.0.1:${port}`;
const redirect = process.env.OIDC_REDIRECT_URI ?? 'http://127.0.0.1:8080/auth/callback';
const secret = process.env.OIDC_CLIENT_SECRET ?? 'order-svc-local-secret';

const users = {
  support: { password: 'support', name: 'Sam Support', roles: ['support'] },
  viewer: { password: 'viewer', name: 'Val Viewer', roles: ['viewer'] },
};

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'order-svc',
    client_secret: secret,
    application_type: 'native',
    redirect_uris: [redirect],
    post_logout_redirect_uris: [new URL('/', redirect).href],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signing] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email', 'roles'],
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email'], roles: ['roles'] },
  // The roles travel in the ID token, as Keycloak's and Entra's mappers put them.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  ttl: { IdToken: Number(process.env.OIDC_TOKEN_TTL ?? 3600) },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: user.name, preferred_username: id, roles: user.roles };
      },
    };
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(res, uid, error) {
  res.writeHead(error ? 401 : 200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in · local provider</title></head>
<body><main><h1>Sign in</h1><p>Local OpenID provider of order-svc. Demo users: support / support, viewer / viewer.</p>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>User <input name="login" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form></main></body></html>`);
}

async function body(req) {
  let raw = '';
  for await (const chunk of req) {
    raw += chunk;
    if (raw.length > 4096) throw new Error('form too large');
  }
  return new URLSearchParams(raw);
}

// The interactions (login, then consent) are ours; the rest is the provider's.
async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    if (req.method !== 'POST' || action !== 'login') return loginPage(res, uid);
    const form = await body(req);
    const user = users[form.get('login')];
    const given = Buffer.from(form.get('password') ?? '');
    const wanted = Buffer.from(user?.password ?? '');
    if (!user || given.length !== wanted.length || !crypto.timingSafeEqual(given, wanted)) {
      return loginPage(res, uid, 'Unknown user or wrong password.');
    }
    return provider.interactionFinished(req, res, { login: { accountId: form.get('login') } }, { mergeWithLastSubmission: false });
  }
  // order-svc is this provider's own first-party client: consent is given for it.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login))?$/.exec(new URL(req.url, issuer).pathname);
  if (!match) return callback(req, res);
  try {
    await interaction(req, res, match[1], match[2]);
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`sign-in failed: ${e.message}\n`);
  }
});
server.listen(port, '127.0.0.1', () => {
  console.log(`local OpenID provider listening on ${port}, issuer ${issuer}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));
