import { describe, expect, it } from 'vitest';
import { useRedisServer } from './helpers/redis.js';

describe('redis test harness', () => {
  const redis = useRedisServer();

  it('gives each test a real server and its own prefix', async () => {
    const client = redis.connect();
    const prefix = redis.prefix();
    expect(prefix).toMatch(/^t[0-9a-f]{8}:$/);
    await client.set(`${prefix}k`, 'v');
    expect(await client.get(`${prefix}k`)).toBe('v');
  });

  it('a second test gets another prefix and sees no key of the first', async () => {
    const client = redis.connect();
    const keys = await client.keys(`${redis.prefix()}*`);
    expect(keys).toEqual([]);
    expect(await client.dbsize()).toBe(1);
  });
});
