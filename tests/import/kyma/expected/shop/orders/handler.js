module.exports = {
  main: async function (event, context) {
    return { received: event.data, type: event['ce-type'] };
  }
}
