import { parseClusterNodes } from './redis-cluster';

describe('parseClusterNodes', () => {
  it('reads ports, roles, masters and failed nodes from CLUSTER NODES', () => {
    const text = [
      'a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460',
      'b2 127.0.0.1:7001@17001 slave a1 0 1700000000000 1 connected',
      'c3 127.0.0.1:7002@17002 master,fail - 1700000000000 1700000000000 2 disconnected',
      'd4 127.0.0.1:7003@17003 master - 0 1700000000000 4 connected 5461-10922',
      '',
    ].join('\n');
    expect(parseClusterNodes(text)).toEqual([
      { id: 'a1', port: 7000, role: 'master', alive: true },
      { id: 'b2', port: 7001, role: 'replica', masterId: 'a1', alive: true },
      { id: 'c3', port: 7002, role: 'master', alive: false },
      { id: 'd4', port: 7003, role: 'master', alive: true },
    ]);
  });
});
