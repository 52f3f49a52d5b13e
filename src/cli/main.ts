console.log('lunbox');
