// A typical Kyma Node.js function (written for wasmfn's benchmark): fetch from an API with axios, reshape the
// answer with lodash, answer through the Express-style response.
const axios = require('axios');
const _ = require('lodash');

module.exports = {
  main: async function (event, context) {
    const base = process.env.ORDERS_API ?? 'http://orders.shop.svc.cluster.local';
    const { data } = await axios.get(`${base}/orders`, { params: { customer: event.data?.customer } });
    const byStatus = _.groupBy(data.orders ?? [], 'status');
    event.extensions.response.set('x-function', context['function-name']);
    return _.mapValues(byStatus, (orders) => ({ count: orders.length, total: _.sumBy(orders, 'amount') }));
  },
};
