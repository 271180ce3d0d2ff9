DROP TABLE IF EXISTS {{.Sibling "_pauses"}};
