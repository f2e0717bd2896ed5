// Runs one SQL query with DuckDB and prints its rows as JSON (BigInts as
// numbers): the export test's independent reader of exported files.
import { DuckDBInstance } from '@duckdb/node-api';

const sql = process.argv[2];
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const reader = await conn.runAndReadAll(sql);
const rows = reader.getRowObjectsJS();
process.stdout.write(JSON.stringify(rows, (_, v) => (typeof v === 'bigint' ? Number(v) : v)));
