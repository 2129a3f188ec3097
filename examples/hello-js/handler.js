// A fetch-style JavaScript function.
addEventListener('fetch', (event) =>
  event.respondWith(
    (async () => {
      const url = new URL(event.request.url);
      return new Response(`Hello from wasmfn (JavaScript)! You asked for ${url.pathname}${url.search}\n`, {
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      });
    })(),
  ),
);
