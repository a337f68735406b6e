// Package chart draws the dashboard's charts as SVG on the server: the exact
// figures go into <title> elements and data attributes, so the page is
// readable without JavaScript and the hover read-out only looks them up.
package chart
