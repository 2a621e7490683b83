// Node clients for compat/run-compat.
//
// usage: node nodeclients.js http|fetch|axios|got URL...   (or: version)
//
// Fetches the URLs one after the other (http: one keep-alive Agent with one
// socket; fetch: the global fetch, undici's pooled keep-alive connection;
// axios and got from npm, installed by compat/setup-deps into
// $COMPAT_NODE_PATH, with their defaults) and prints per request:
//   RESULT <i> <status> <body length> <md5 of body> [<1xx seen>]
//   ERROR <i> <message>
'use strict';
const http = require('http');
const crypto = require('crypto');

function md5(buf) { return crypto.createHash('md5').update(buf).digest('hex'); }
function res(i, status, body, info) {
  console.log(`RESULT ${i} ${status} ${body.length} ${md5(body)} ${info}`);
}
function err(i, e) {
  const c = e && e.cause ? ` (cause: ${e.cause.code || ''} ${e.cause.message || e.cause})` : '';
  console.log(`ERROR ${i} ${(e && e.code) || ''} ${String(e && e.message || e).replace(/\n/g, ' ')}${c}`);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function viaHttp(url) {
  return new Promise((resolve, reject) => {
    let info = 0;
    const req = http.get(url, { agent, timeout: 300000 }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => resolve([r.statusCode, Buffer.concat(chunks), info]));
      r.on('error', reject);
    });
    req.on('information', () => { info++; });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
  });
}

async function viaFetch(url, first) {
  const r = await fetch(url, { signal: AbortSignal.timeout(300000), ...upOpts(first) });
  const body = Buffer.from(await r.arrayBuffer());
  return [r.status, body, '-'];
}

// axios and got live outside the tree (compat/setup-deps installs them)
// COMPAT_UPLOAD=PUT|POST (and COMPAT_UPLOAD_FILE): the first request sends
// that file as its body with "Expect: 100-continue" (fetch, axios, got)
const UPLOAD = process.env.COMPAT_UPLOAD;
const UPLOAD_BODY = UPLOAD ? require('fs').readFileSync(process.env.COMPAT_UPLOAD_FILE) : null;
function upOpts(first) {
  return first && UPLOAD ? { method: UPLOAD, body: UPLOAD_BODY, headers: { Expect: '100-continue' } } : {};
}

const NPM = process.env.COMPAT_NODE_PATH || '/var/cache/mod_processing-compat/npm/node_modules';

async function viaAxios(url, first) {
  const axios = require(`${NPM}/axios`);
  const o = upOpts(first);
  const r = await axios.request({ url, method: o.method || 'GET', data: o.body, headers: o.headers, responseType: 'arraybuffer', timeout: 300000, validateStatus: () => true });
  return [r.status, Buffer.from(r.data), '-'];
}

let gotMod = null;
async function viaGot(url, first) {
  if (!gotMod) gotMod = (await import(`${NPM}/got/dist/source/index.js`)).default;
  const r = await gotMod(url, { ...upOpts(first), responseType: 'buffer', throwHttpErrors: false, retry: { limit: 0 }, timeout: { request: 300000 } });
  return [r.statusCode, r.body, '-'];
}

function npmVersion(name) {
  try { return require(`${NPM}/${name}/package.json`).version; } catch (e) { return '?'; }
}

async function main() {
  const [mode, ...urls] = process.argv.slice(2);
  if (mode === 'version') {
    console.log(`node ${process.versions.node}, llhttp ${process.versions.llhttp}, undici ${process.versions.undici}, axios ${npmVersion('axios')}, got ${npmVersion('got')}`);
    return;
  }
  const get = { http: viaHttp, fetch: viaFetch, axios: viaAxios, got: viaGot }[mode];
  for (let i = 0; i < urls.length; i++) {
    // undici hands the connection back to its pool only after the body
    // was consumed, asynchronously: without a pause the next fetch opens a
    // new connection even when no 102 was involved
    if (i > 0 && mode !== 'http') await new Promise((r) => setTimeout(r, 200));
    try {
      const [status, body, info] = await get(urls[i], i === 0);
      res(i + 1, status, body, info);
    } catch (e) {
      err(i + 1, e);
    }
  }
  agent.destroy();
  process.exit(0);
}
main();
