// Package archtest holds the test that keeps the direction of imports between the agent's
// packages: see TestImportDirection and README.md's "Architecture" section.
package archtest
