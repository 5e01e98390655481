/** What parseNetworkConfig says about a config it must reject. */
import { expect } from 'vitest';
import { parseNetworkConfig } from '../../src/config';
import { ConfigError } from '../../src/util/errors';

/** Parses `text`, expecting a ConfigError; returns it (fails the test when the config is accepted or fails otherwise). */
export function configErrorOf(text: string): ConfigError {
  let err: unknown;
  try {
    parseNetworkConfig(text);
  } catch (e) {
    err = e;
  }
  expect(err, `config accepted or failed otherwise: ${text}`).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}
