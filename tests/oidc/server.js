// A real OAuth 2.0 authorisation server for unigate's oauth2 authenticator tests: node's
// oidc-provider with the client credentials grant, RFC 7662 introspection and RFC 7009
// revocation, on 127.0.0.1 at a port the OS picks.
//
// Usage: node server.js [CERT.pem KEY.pem]
//
// The first line on stdout is `listening http://127.0.0.1:PORT`: the Rust test reads it. Given a
// certificate and key, the same provider also answers over HTTPS on a second port, announced on
// the second line: `tls https://127.0.0.1:PORT`. The process runs until killed (the test kills
// it when it ends, or to play an identity provider that went away).
//
// Clients (secrets are test values, not secrets):
//   unigate / unigate-secret            introspects (client_secret_basic)
//   unigate-post / unigate-post-secret  introspects (client_secret_post)
//   device / device-secret              gets tokens (client_credentials, client_secret_post),
//                                       scopes telemetry:write telemetry:read commands:read
//   shortlived / shortlived-secret      the same, with tokens that expire after 2 s
//
// Test hooks, beside the provider's own routes:
//   GET  /test/introspections  {"count": N}: introspection requests received so far
//   POST /test/hang            from now on introspection requests are never answered
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider from 'oidc-provider';

const SCOPES = ['telemetry:write', 'telemetry:read', 'commands:read'];

let introspections = 0;
let hang = false;
let provider;

function handle(req, res) {
  if (req.url === '/test/introspections') {
    const body = JSON.stringify({ count: introspections });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  if (req.url === '/test/hang' && req.method === 'POST') {
    hang = true;
    res.writeHead(204);
    res.end();
    return;
  }
  if (req.url.startsWith('/token/introspection')) {
    introspections += 1;
    if (hang) {
      // Never answered: the client's timeout must fire.
      return;
    }
  }
  provider.callback()(req, res);
}

const server = http.createServer(handle);

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const device = (id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_post',
    scope: SCOPES.join(' '),
  });
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'unigate',
        client_secret: 'unigate-secret',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'unigate-post',
        client_secret: 'unigate-post-secret',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_post',
      },
      device('device'),
      device('shortlived'),
    ],
    scopes: SCOPES,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    cookies: { keys: ['unigate-test-only-cookie-key'] },
    ttl: {
      ClientCredentials(ctx, token, client) {
        return client.clientId === 'shortlived' ? 2 : 600;
      },
    },
  });
  // Errors the provider answers with (invalid_client, …) are part of the tests; print them
  // on stderr for a failing test's report.
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message));
  provider.on('introspection.error', (ctx, err) => console.error('introspection.error', err.message));
  console.log(`listening ${issuer}`);
  const [tlsCert, tlsKey] = process.argv.slice(2);
  if (tlsCert && tlsKey) {
    const tls = https.createServer({ cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) }, handle);
    tls.listen(0, '127.0.0.1', () => console.log(`tls https://127.0.0.1:${tls.address().port}`));
  }
});

// Killed by the test; exit quietly on the usual signals too.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
