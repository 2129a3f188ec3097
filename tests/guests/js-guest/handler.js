// Test guest: a fetch-style JavaScript handler.
addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

// Module-level state: kept between the requests of a reused instance (`scaling.reuse`), fresh otherwise.
let count = 0;

async function handle(request) {
  const url = new URL(request.url);
  if (url.pathname === '/count') {
    count += 1;
    return new Response(String(count));
  }
  if (url.pathname === '/echo') {
    const body = await request.text();
    return new Response(body, { headers: { 'content-type': 'text/plain' } });
  }
  if (url.pathname === '/path') {
    return new Response(url.pathname + url.search);
  }
  return new Response('hello from js\n', { headers: { 'content-type': 'text/plain' } });
}
