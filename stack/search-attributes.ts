/**
 * Registers the workflows' search attributes on a Temporal server that was not started with them (the time-skipping
 * test server, a real cluster). `npm start` passes them to the dev server as `--search-attribute` flags instead.
 */
import { temporal } from '@temporalio/proto';
import type { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_REGISTRATION } from '../workflows/messages';

const INDEXED: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  Keyword: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  KeywordList: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
  Int: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
  Datetime: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
};

export async function registerSearchAttributes(connection: Connection, namespace: string): Promise<void> {
  const searchAttributes = Object.fromEntries(SEARCH_ATTRIBUTE_REGISTRATION.map(([name, type]) => [name, INDEXED[type]!]));
  await connection.operatorService.addSearchAttributes({ namespace, searchAttributes });
}
