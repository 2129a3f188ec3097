module.exports = { greeting: 'Hello' };
