// A wasmfn function in the Kubeless style: `event.data` is the request body (parsed when it is JSON) and
// `event.extensions.request` has the method, path, headers and query.
// Return a string, an object (sent as JSON) or { statusCode, headers, body }; async handlers are awaited.
export async function handler(event, context) {
  const name = event.extensions.request.query.name ?? event.data?.name ?? 'world';
  return { message: `Hello, ${name}!`, function: context['function-name'] };
}
