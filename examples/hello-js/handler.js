// A fetch-style JavaScript function: a standard Request in, a standard Response out.
export default {
  async fetch(request) {
    const url = new URL(request.url);
    const greeting = process.env.GREETING ?? 'Hello';
    return new Response(`${greeting} from wasmfn (JavaScript)! You asked for ${url.pathname}${url.search}\n`, {
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    });
  },
};
