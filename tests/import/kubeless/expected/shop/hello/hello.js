module.exports = {
  foo: function (event, context) {
    return `Hello, ${event.data.name} (${process.env.GREETING})`;
  }
}
