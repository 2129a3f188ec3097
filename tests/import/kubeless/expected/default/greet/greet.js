const { greeting } = require('./lib/words');
module.exports = { hi: (event, context) => `${greeting}, ${event.data.name}` };
